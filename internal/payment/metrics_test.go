package payment_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/payment"
)

func TestMetricsLint(t *testing.T) {
	e := newEnv(t, sqliteDB(t), nil)
	reg := prometheus.NewRegistry()
	svc, err := payment.New(e.cfg, e.db, e.tp, idgentest.New(t), quiet(), reg)
	if err != nil {
		t.Fatal(err)
	}
	payment.TouchMetrics(svc)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 10 {
		t.Fatalf("%d metric families", len(mfs))
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %v", problems, err)
	}
}
