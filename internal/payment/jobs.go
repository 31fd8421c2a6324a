package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// RunJobs runs the background jobs until ctx ends. They must run in one
// process at a time (the app runs them under leader election); running
// them twice would still be safe, only wasteful, because every step is a
// compare-and-set. The jobs:
//
//   - intents: drive payments interrupted before the provider answered,
//     poll payments still settling, cancel payments nobody acted on in
//     ActionTimeout; the same for payouts;
//   - renewals: start renewal payments of memberships whose period ended;
//   - deliveries: send creators' webhooks that are due;
//   - reconciliation: every ReconcileInterval;
//   - pruning of idempotency keys and webhook event IDs past their TTL.
func (s *Service) RunJobs(ctx context.Context) {
	tick := min(s.cfg.RecoveryAfter, s.cfg.PollInterval) / 2
	tick = min(max(tick, 50*time.Millisecond), time.Second)
	var wg sync.WaitGroup
	loop := func(name string, period time.Duration, f func(context.Context) error) {
		wg.Go(func() {
			t := time.NewTicker(period)
			defer t.Stop()
			for {
				if err := f(ctx); err != nil && ctx.Err() == nil {
					s.logger.Warn("payment: background job failed", "job", name, "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	loop("intents", tick, func(ctx context.Context) error { _, err := s.DriveDue(ctx); return err })
	loop("renewals", min(tick*2, time.Second), func(ctx context.Context) error { _, err := s.RenewDue(ctx); return err })
	loop("deliveries", 250*time.Millisecond, func(ctx context.Context) error { _, err := s.DeliverDue(ctx); return err })
	loop("prune", time.Hour, func(ctx context.Context) error { _, err := s.pruneKeys(ctx); return err })
	wg.Go(func() {
		// The first reconciliation waits one interval: at start-up the
		// other jobs have interrupted work to finish first.
		t := time.NewTicker(s.cfg.ReconcileInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if _, err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
				s.m.reconciled.WithLabelValues("error").Inc()
				s.logger.Warn("payment: reconciliation failed", "err", err)
			}
		}
	})
	wg.Wait()
}

// DriveDue drives every payment and payout whose next check is due and
// returns how many it handled.
func (s *Service) DriveDue(ctx context.Context) (int, error) {
	now := ms(s.now())
	var ids []int64
	rows, err := s.db.query(ctx, nil, `SELECT id FROM payment_intents WHERE state IN ('pending', 'requires_action', 'processing')
		AND next_check_at <= ? AND provider = ? ORDER BY next_check_at LIMIT 256`, now, s.provider.Name())
	if err != nil {
		return 0, fmt.Errorf("payment: due intents: %w", err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	var payouts []int64
	rows, err = s.db.query(ctx, nil, `SELECT id FROM payouts WHERE state IN ('pending', 'in_transit') AND next_check_at <= ? AND provider = ?
		ORDER BY next_check_at LIMIT 64`, now, s.provider.Name())
	if err != nil {
		return 0, fmt.Errorf("payment: due payouts: %w", err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		payouts = append(payouts, id)
	}
	rows.Close()

	var mu sync.Mutex
	var errList []error
	note := func(err error) {
		if err != nil && errs.KindOf(err) != errs.Unavailable && ctx.Err() == nil {
			mu.Lock()
			errList = append(errList, err)
			mu.Unlock()
		}
	}
	work := make(chan func(), 16)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for f := range work {
				f()
			}
		})
	}
	for _, id := range ids {
		work <- func() { note(s.driveIntent(ctx, id)) }
	}
	for _, id := range payouts {
		work <- func() { note(s.drivePayoutID(ctx, id)) }
	}
	close(work)
	wg.Wait()
	return len(ids) + len(payouts), errors.Join(errList...)
}

// driveIntent does what an intent's state needs when its check is due.
func (s *Service) driveIntent(ctx context.Context, id int64) error {
	it, err := s.intent(ctx, nil, id)
	if err != nil {
		return err
	}
	if it.NextCheckAt.After(s.now()) {
		return nil
	}
	switch {
	case it.State == Pending || (it.State != Pending && !it.State.Final() && it.ProviderRef == ""):
		// Interrupted before the provider's answer was applied: ask
		// again with the same key; the provider answers as before.
		s.m.recovered.WithLabelValues("payment_pending").Inc()
		_, err = s.drive(ctx, it, nil)
	case it.State == Processing:
		start := time.Now()
		ch, gerr := s.provider.GetCharge(ctx, it.ProviderRef)
		s.m.observeProvider("get", start, gerr)
		if gerr != nil {
			s.postponeIntent(ctx, it)
			return gerr
		}
		s.m.recovered.WithLabelValues("payment_poll").Inc()
		_, err = s.apply(ctx, id, &ch, nil)
	case it.State == RequiresAction:
		// Nobody acted within ActionTimeout: cancel.
		ch, cerr := s.cancelAtProvider(ctx, it)
		if cerr != nil {
			s.postponeIntent(ctx, it)
			return cerr
		}
		s.m.recovered.WithLabelValues("payment_abandoned").Inc()
		_, err = s.apply(ctx, id, &ch, nil)
	}
	return err
}

// postponeIntent backs off an intent whose provider call failed.
func (s *Service) postponeIntent(ctx context.Context, it Intent) {
	s.db.tx(ctx, func(tx *sql.Tx) error {
		_, err := s.db.exec(ctx, tx, `UPDATE payment_intents SET polls = polls + 1, next_check_at = ? WHERE id = ? AND version = ?`,
			ms(s.now().Add(s.backoff(s.cfg.PollInterval, it.Polls+1))), it.ID, it.Version)
		return err
	})
}

func (s *Service) drivePayoutID(ctx context.Context, id int64) error {
	p, err := s.payout(ctx, nil, id, false)
	if err != nil {
		return err
	}
	if p.NextCheckAt.After(s.now()) {
		return nil
	}
	switch p.State {
	case PayoutPending:
		s.m.recovered.WithLabelValues("payout_pending").Inc()
		_, err = s.drivePayout(ctx, p, nil)
	case PayoutInTransit:
		start := time.Now()
		pp, gerr := s.provider.GetPayout(ctx, p.ProviderRef)
		s.m.observeProvider("get_payout", start, gerr)
		if gerr != nil {
			s.db.tx(ctx, func(tx *sql.Tx) error {
				_, err := s.db.exec(ctx, tx, `UPDATE payouts SET polls = polls + 1, next_check_at = ? WHERE id = ? AND version = ?`,
					ms(s.now().Add(s.backoff(s.cfg.PollInterval, p.Polls+1))), p.ID, p.Version)
				return err
			})
			return gerr
		}
		s.m.recovered.WithLabelValues("payout_poll").Inc()
		err = s.db.tx(ctx, func(tx *sql.Tx) error {
			_, err := s.applyPayoutTx(ctx, tx, id, &pp)
			return err
		})
		if errors.Is(err, errStale) {
			err = nil
		}
	}
	return err
}
