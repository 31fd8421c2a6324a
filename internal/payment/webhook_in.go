package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// MaxWebhookBytes bounds an incoming webhook body.
const MaxWebhookBytes = 256 << 10

// Webhook results, as counted in metrics and answered to the provider.
const (
	WebhookApplied   = "applied"
	WebhookDuplicate = "duplicate"
	WebhookIgnored   = "ignored"
)

// ReceiveWebhook verifies and applies one webhook from the provider named
// provider. A forged signature, a missing or malformed header, or a
// timestamp outside the tolerance (a replay of a captured request) is
// refused with an Unauthorized error and changes nothing. An event seen
// before (the provider retried, or an attacker replayed it inside the
// tolerance) is a no-op answered as a duplicate; events that arrive out of
// order cannot move a payment backwards because the state machine refuses
// backward moves. The event's ID is recorded in the transaction that
// applies it, so a crash loses neither.
func (s *Service) ReceiveWebhook(ctx context.Context, provider string, payload []byte, h http.Header) (string, error) {
	if provider != s.provider.Name() {
		s.m.webhooksIn.WithLabelValues("unknown_provider").Inc()
		return "", errs.E(errs.NotFound, "no webhook endpoint for provider %q", provider)
	}
	ev, err := s.provider.ParseWebhook(payload, h, s.now(), s.cfg.WebhookTolerance)
	if err != nil {
		reason := "bad_signature"
		switch {
		case errors.Is(err, ErrStaleSignature):
			reason = "stale"
		case errors.Is(err, ErrBadSignatureHeader):
			reason = "malformed_header"
		case errs.KindOf(err) == errs.Invalid:
			reason = "malformed"
		}
		s.m.webhooksIn.WithLabelValues(reason).Inc()
		s.logger.Warn("payment: webhook refused", "provider", provider, "reason", reason)
		if errs.KindOf(err) == errs.Invalid {
			return "", err
		}
		return "", errs.Wrap(errs.Unauthorized, err, "webhook signature refused")
	}
	s.failpoint("webhook_received")
	result := WebhookIgnored
	var changed State
	for attempt := 0; ; attempt++ {
		err = s.db.tx(ctx, func(tx *sql.Tx) error {
			result, changed = WebhookIgnored, ""
			res, err := s.db.exec(ctx, tx, `INSERT INTO payment_webhook_events(provider, event_id, type, received_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (provider, event_id) DO NOTHING`, provider, ev.ID, ev.Type, ms(s.now()))
			if err != nil {
				return fmt.Errorf("payment: webhook dedupe: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				result = WebhookDuplicate
				return nil
			}
			switch {
			case ev.Charge != nil:
				id, err := s.intentIDFor(ctx, tx, *ev.Charge)
				if err != nil || id == 0 {
					return err
				}
				it, from, err := s.applyTx(ctx, tx, id, ev.Charge, nil)
				if err != nil {
					return err
				}
				if from != it.State {
					changed = it.State
				}
				result = WebhookApplied
			case ev.Payout != nil:
				id := ev.Payout.PayoutID
				if id == 0 {
					if err := s.db.queryRow(ctx, tx, `SELECT id FROM payouts WHERE provider = ? AND provider_ref = ?`, provider, ev.Payout.Ref).Scan(&id); err != nil {
						if errors.Is(err, sql.ErrNoRows) {
							return nil
						}
						return err
					}
				}
				if _, err := s.applyPayoutTx(ctx, tx, id, ev.Payout); err != nil {
					if errs.KindOf(err) == errs.NotFound {
						return nil
					}
					return err
				}
				result = WebhookApplied
			}
			return nil
		})
		if errors.Is(err, errStale) && attempt < 5 {
			continue
		}
		break
	}
	if err != nil {
		s.m.webhooksIn.WithLabelValues("failed").Inc()
		return "", err
	}
	if changed != "" {
		s.m.intents.WithLabelValues(string(changed)).Inc()
	}
	s.m.webhooksIn.WithLabelValues(result).Inc()
	if result == WebhookIgnored {
		s.logger.Info("payment: webhook for nothing Blueprint knows", "provider", provider, "event", ev.ID, "type", ev.Type)
	}
	s.failpoint("webhook_applied")
	return result, nil
}

// intentIDFor finds the intent a provider charge belongs to: by the intent
// ID Blueprint put in its metadata, else by the provider's reference. It
// returns 0 for a charge Blueprint did not make.
func (s *Service) intentIDFor(ctx context.Context, tx *sql.Tx, ch Charge) (int64, error) {
	var id int64
	var prov, ref string
	if ch.IntentID != 0 {
		err := s.db.queryRow(ctx, tx, `SELECT id, provider, COALESCE(provider_ref, '') FROM payment_intents WHERE id = ?`, ch.IntentID).Scan(&id, &prov, &ref)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		if prov != s.provider.Name() || (ref != "" && ch.Ref != "" && ref != ch.Ref) {
			return 0, nil
		}
		return id, nil
	}
	err := s.db.queryRow(ctx, tx, `SELECT id FROM payment_intents WHERE provider = ? AND provider_ref = ?`, s.provider.Name(), ch.Ref).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}
