package payment

import (
	"bytes"
	"context"
	"html/template"
	"net/http"

	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/payment/currency"
)

// AdminHandler serves the operator's view, for the admin listener:
//
//	GET  /payments                 HTML: last reconciliation and its drift, payments by state, ledger accounts
//	GET  /payments/reconciliation  the last reconciliation report (JSON)
//	POST /payments/reconcile       run a reconciliation now and return its report (JSON)
//	GET  /payments/ledger          trial balance and every account's balance (JSON)
func (s *Service) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /payments", s.adminPage)
	mux.HandleFunc("GET /payments/reconciliation", func(w http.ResponseWriter, r *http.Request) {
		rep, err := s.LastReconciliation(r.Context())
		if err != nil {
			httpx.Error(w, r, s.logger, err)
			return
		}
		httpx.JSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST /payments/reconcile", func(w http.ResponseWriter, r *http.Request) {
		rep, err := s.Reconcile(r.Context())
		if err != nil {
			httpx.Error(w, r, s.logger, err)
			return
		}
		httpx.JSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("GET /payments/ledger", func(w http.ResponseWriter, r *http.Request) {
		tb, err := s.ledger.Verify(r.Context())
		if err != nil {
			httpx.Error(w, r, s.logger, err)
			return
		}
		accts, err := s.ledger.Balances(r.Context(), 0)
		if err != nil {
			httpx.Error(w, r, s.logger, err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"trial_balance": tb, "accounts": accts})
	})
	// The admin listener is on loopback, but a web page the operator
	// visits could still post to it: refuse cross-origin browser posts.
	return http.NewCrossOriginProtection().Handler(mux)
}

// StateCount is how many intents are in one state.
type StateCount struct {
	State State
	Count int64
}

func (s *Service) stateCounts(ctx context.Context) ([]StateCount, error) {
	rows, err := s.db.query(ctx, nil, `SELECT state, COUNT(*) FROM payment_intents GROUP BY state ORDER BY state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StateCount
	for rows.Next() {
		var c StateCount
		if err := rows.Scan(&c.State, &c.Count); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

var adminTmpl = template.Must(template.New("payments").Funcs(template.FuncMap{"money": currency.Format}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Payments · Blueprint admin</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}.bad{color:#b00020;font-weight:bold}.ok{color:#1b5e20;font-weight:bold}</style></head>
<body><h1>Payments</h1>
<p>Provider: <b>{{.Provider}}</b>. <form method="post" action="/payments/reconcile" style="display:inline"><button>Reconcile now</button></form>
(answers with the JSON report) · <a href="/payments/reconciliation">last report (JSON)</a> · <a href="/payments/ledger">ledger (JSON)</a></p>
<h2>Reconciliation</h2>
{{with .Recon}}{{if .ID}}
<p>Run {{.ID}}, {{.Started.Format "2006-01-02 15:04:05 UTC"}}, window {{.Window}}: {{.Checked}} checked, {{.Healed}} healed,
{{if .Drift}}<span class="bad">{{len .Drift}} drift</span>{{else}}<span class="ok">no drift</span>{{end}}.</p>
{{if .Drift}}<table><tr><th>kind</th><th>subject</th><th>detail</th></tr>
{{range .Drift}}<tr><td>{{.Kind}}</td><td>{{.Subject}}</td><td>{{.Detail}}</td></tr>{{end}}</table>{{end}}
{{else}}<p>No reconciliation has run yet.</p>{{end}}{{end}}
<h2>Payments by state</h2>
<table><tr><th>state</th><th>count</th></tr>{{range .States}}<tr><td>{{.State}}</td><td>{{.Count}}</td></tr>{{end}}</table>
<h2>Ledger</h2>
<p>{{.Trial.Transactions}} transactions, {{.Trial.Entries}} entries.
{{if .Trial.Problems}}<span class="bad">Trial balance failed: {{range .Trial.Problems}}{{.}}; {{end}}</span>{{else}}<span class="ok">Trial balance holds: debits equal credits in every currency.</span>{{end}}</p>
<table><tr><th>account</th><th>type</th><th>debits</th><th>credits</th><th>balance</th></tr>
{{range .Accounts}}<tr><td>{{.Code}}</td><td>{{.Type}}</td><td>{{money .Debits .Currency}}</td><td>{{money .Credits .Currency}}</td><td>{{money .Balance .Currency}}</td></tr>{{end}}</table>
</body></html>`))

func (s *Service) adminPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rec, err := s.LastReconciliation(ctx)
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	states, err := s.stateCounts(ctx)
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	tb, err := s.ledger.Verify(ctx)
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	accts, err := s.ledger.Balances(ctx, 0)
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	if len(accts) > 500 {
		accts = accts[:500]
	}
	var buf bytes.Buffer
	if err := adminTmpl.Execute(&buf, map[string]any{"Provider": s.provider.Name(), "Recon": rec, "States": states, "Trial": tb, "Accounts": accts}); err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}
