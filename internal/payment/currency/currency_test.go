package currency

import "testing"

func TestValidAndExponent(t *testing.T) {
	for code, want := range map[string]int{"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3, "CLF": 4} {
		if e, ok := Exponent(code); !ok || e != want {
			t.Errorf("Exponent(%s) = %d, %v; want %d", code, e, ok, want)
		}
	}
	for _, bad := range []string{"", "usd", "US", "USDD", "X" + "XX", "XTS", "XAU", "ABC"} {
		if Valid(bad) {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
	if n := len(Codes()); n < 150 {
		t.Fatalf("only %d codes", n)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		amount int64
		code   string
		want   string
	}{
		{1234, "USD", "12.34 USD"}, {5, "USD", "0.05 USD"}, {0, "EUR", "0.00 EUR"}, {-250, "GBP", "-2.50 GBP"},
		{500, "JPY", "500 JPY"}, {1, "KWD", "0.001 KWD"}, {123456, "BHD", "123.456 BHD"},
	} {
		if got := Format(c.amount, c.code); got != c.want {
			t.Errorf("Format(%d, %s) = %q, want %q", c.amount, c.code, got, c.want)
		}
	}
}
