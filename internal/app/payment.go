package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/payment/stripeprovider"
	"github.com/blueprint-media/blueprint/internal/payment/testprovider"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/web"
)

// Test hooks read from the environment (the configuration loader ignores
// BLUEPRINT_TEST_* variables). The chaos test of internal/e2e uses them to
// kill the process at a chosen step of the payment path.
const (
	// envPaymentCrash is a comma list of step@n: the process kills itself
	// with SIGKILL the n-th time it passes step (see payment.Config.Failpoint).
	envPaymentCrash = "BLUEPRINT_TEST_PAYMENT_CRASH"
	// envPaymentFaults is the test provider's share of calls that fail
	// temporarily (half of them after committing).
	envPaymentFaults = "BLUEPRINT_TEST_PAYMENT_FAULTS"
)

// startPayment starts the payment service: the provider (the built-in test
// provider or Stripe), the API and wallet page on the frontends, the
// operator view at /payments on the admin listener, and the background
// jobs (the test provider's settlement and webhooks, recovery, polling,
// renewals, reconciliation, outgoing webhooks) under the
// "singleton/payment" leader election.
func (a *App) startPayment(ctx context.Context) error {
	pc := a.cfg.Payment
	if !pc.Enabled {
		return nil
	}
	logger := a.logger.With("component", "payment")
	failpoint, err := crashPoints(os.Getenv(envPaymentCrash))
	if err != nil {
		return err
	}
	var svc *payment.Service
	var provider payment.Provider
	var tp *testprovider.Provider
	switch pc.Provider {
	case "stripe":
		sp, err := stripeprovider.New(stripeprovider.Config{
			SecretKey: pc.Stripe.SecretKey, PublishableKey: pc.Stripe.PublishableKey, WebhookSecret: pc.Stripe.WebhookSecret, APIURL: pc.Stripe.APIURL,
		})
		if err != nil {
			return err
		}
		provider = sp
	default:
		secret := []byte(pc.WebhookSecret)
		if len(secret) == 0 {
			appSecret, err := a.secret()
			if err != nil {
				return err
			}
			m := hmac.New(sha256.New, appSecret)
			m.Write([]byte("blueprint payment test provider webhooks"))
			secret = []byte(hex.EncodeToString(m.Sum(nil)))
		}
		var faults float64
		if v := os.Getenv(envPaymentFaults); v != "" {
			if faults, err = strconv.ParseFloat(v, 64); err != nil || faults < 0 || faults > 1 {
				return fmt.Errorf("app: %s: want a share between 0 and 1", envPaymentFaults)
			}
		}
		tpc := testprovider.Config{
			Path: filepath.Join(a.cfg.DataDir, "payment-testprovider.db"), Secret: secret, WebhookURL: a.testWebhookURL(),
			SettleDelay: pc.TestProvider.SettleDelay, FaultRate: faults, Failpoint: failpoint,
		}
		if tpc.WebhookURL == "" {
			// No public listener here: hand the signed webhooks to the
			// service directly.
			tpc.Deliver = func(ctx context.Context, body []byte, h http.Header) (int, error) {
				if _, err := svc.ReceiveWebhook(ctx, testprovider.Name, body, h); err != nil {
					return errs.HTTPStatus(err), err
				}
				return http.StatusOK, nil
			}
		}
		tp, err = testprovider.Open(ctx, tpc, logger.With("provider", "test"))
		if err != nil {
			return err
		}
		a.onStop(func(context.Context) error { return tp.Close() })
		provider = tp
	}
	cfg := payment.Config{
		Currencies: pc.Currencies, DefaultCurrency: pc.DefaultCurrency, MinAmount: pc.MinAmount, MaxAmount: pc.MaxAmount,
		DailyLimit: pc.DailyLimit, FeeBasisPoints: pc.FeeBasisPoints, MembershipPrice: pc.MembershipPrice,
		MembershipPeriod: pc.MembershipPeriod, MembershipRetry: pc.MembershipRetry, MembershipMaxRetries: pc.MembershipMaxRetries,
		PayoutMin: pc.PayoutMin, ActionTimeout: pc.ActionTimeout, RecoveryAfter: pc.RecoveryAfter, PollInterval: pc.PollInterval,
		ReconcileInterval: pc.ReconcileInterval, ReconcileWindow: pc.ReconcileWindow, IdempotencyTTL: pc.IdempotencyTTL,
		WebhookTolerance: pc.WebhookTolerance, WebhookMaxAttempts: pc.WebhookMaxAttempts, WebhookTimeout: pc.WebhookTimeout,
		WebhookAllowPrivate: pc.WebhookAllowPrivate, MaxWebhookEndpoints: pc.MaxWebhookEndpoints,
		Users: userDirectory{a.db}, Failpoint: failpoint,
	}
	dialect := payment.SQLite
	if a.db.Dialect == sqlstore.Postgres {
		dialect = payment.Postgres // row locks (FOR UPDATE) and retries on serialization failures
	}
	db := &payment.DB{W: a.db.W, R: a.db.R, Dialect: dialect, Outbox: outbox.Insert}
	svc, err = payment.New(cfg, db, provider, a.ids, logger, a.reg)
	if err != nil {
		return err
	}
	pages, err := web.NewPages()
	if err != nil {
		return err
	}
	a.modules = append(a.modules, svc.Module(pages, videoOwners{a.media}))
	admin := svc.AdminHandler()
	a.adminMux.Handle("/payments", admin)
	a.adminMux.Handle("/payments/", admin)

	elector := &lock.Elector{Locker: a.locker, Name: "singleton/payment"}
	a.bg.Go(func() {
		elector.Run(a.bgCtx, func(ctx context.Context, lease *lock.Lease) {
			logger.Info("leading the payment jobs", "token", lease.Token)
			var jobs sync.WaitGroup
			if tp != nil {
				jobs.Go(func() { tp.Run(ctx) })
			}
			jobs.Go(func() { svc.RunJobs(ctx) })
			jobs.Wait()
		})
	})
	return nil
}

// testWebhookURL is where the test provider posts its webhooks:
// payment.test_provider.webhook_url, else this process's gateway when it
// listens on a fixed port, else "" (delivered in-process).
func (a *App) testWebhookURL() string {
	if u := a.cfg.Payment.TestProvider.WebhookURL; u != "" {
		return u
	}
	if !a.cfg.HasRole("gateway") {
		return ""
	}
	host, port, err := net.SplitHostPort(a.cfg.HTTPAddr)
	if err != nil || port == "0" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/api/v1/payment-webhooks/" + testprovider.Name
}

// crashPoints parses BLUEPRINT_TEST_PAYMENT_CRASH ("step@n,step@n") into a
// failpoint that kills the process with SIGKILL at the n-th pass of step,
// after saying so on stderr. Empty means no failpoint.
func crashPoints(spec string) (func(string), error) {
	if spec == "" {
		return nil, nil
	}
	at := map[string]int{}
	for part := range strings.SplitSeq(spec, ",") {
		step, n, ok := strings.Cut(strings.TrimSpace(part), "@")
		k, err := strconv.Atoi(n)
		if !ok || step == "" || err != nil || k < 1 {
			return nil, fmt.Errorf("app: %s: %q is not step@n", envPaymentCrash, part)
		}
		at[step] = k
	}
	var mu sync.Mutex
	seen := map[string]int{}
	return func(step string) {
		k, ok := at[step]
		if !ok {
			return
		}
		mu.Lock()
		seen[step]++
		hit := seen[step] == k
		mu.Unlock()
		if hit {
			fmt.Fprintf(os.Stderr, "payment failpoint %s#%d: killing the process\n", step, k)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never returns: the signal ends the process
		}
	}, nil
}

// userDirectory answers the payment service's questions about accounts.
type userDirectory struct{ db *sqlstore.DB }

func (u userDirectory) Exists(ctx context.Context, id int64) (bool, error) {
	var n int
	err := u.db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE id = ?`, id).Scan(&n)
	return n > 0, err
}

func (u userDirectory) Lookup(ctx context.Context, username string) (int64, error) {
	var id int64
	err := u.db.R.QueryRowContext(ctx, `SELECT id FROM users WHERE username = ?`, username).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}

// videoOwners resolves tips on a video to the video's owner.
type videoOwners struct{ media *media.Service }

func (v videoOwners) VideoOwner(ctx context.Context, id int64) (int64, error) {
	vid, err := v.media.Get(ctx, id)
	if err != nil {
		return 0, err
	}
	return vid.UserID, nil
}
