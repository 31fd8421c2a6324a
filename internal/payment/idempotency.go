package payment

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// IdempotencyHeader is the request header that carries the client's
// idempotency key. Every mutating payment call requires one.
const IdempotencyHeader = "Idempotency-Key"

// ReplayedHeader is set on a response that is the stored answer to an
// earlier request with the same key.
const ReplayedHeader = "Idempotent-Replayed"

// MaxKeyLength is the longest idempotency key accepted (Stripe's limit).
const MaxKeyLength = 255

// CheckKey validates an idempotency key: 1 to 255 printable ASCII
// characters without spaces.
func CheckKey(key string) error {
	if key == "" {
		return errs.E(errs.Invalid, "the %s header is required on this call: a unique value per operation, the same on every retry", IdempotencyHeader)
	}
	if len(key) > MaxKeyLength {
		return errs.E(errs.Invalid, "%s is longer than %d characters", IdempotencyHeader, MaxKeyLength)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return errs.E(errs.Invalid, "%s must be printable ASCII without spaces", IdempotencyHeader)
		}
	}
	return nil
}

// Fingerprint identifies a request: the operation and its decoded,
// re-encoded parameters, so that formatting differences do not matter but
// any change of value does.
func Fingerprint(op string, params any) string {
	b, _ := json.Marshal(params)
	h := sha256.New()
	h.Write([]byte(op))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// Reply is the outcome of a mutating call: the HTTP status and JSON body
// that the first request got and every retry with the same key gets again.
type Reply struct {
	Status   int
	Body     []byte
	Replayed bool
}

// claim is the state of an idempotency key after claimKey.
type claim struct {
	resourceID int64
	reply      *Reply // set when the key already has a stored response
}

// claimKey looks up (user, key). A new key runs create in the same
// transaction — it records the resource the request makes (the recovery
// point) — and stores the key with it. A known key with another operation
// or fingerprint is a conflict; with a stored response it is a replay;
// without one (the first request crashed or is still running) the caller
// resumes from the recorded resource, which is safe because every later
// step is idempotent.
func (s *Service) claimKey(ctx context.Context, user int64, key, op, fp string, create func(tx *sql.Tx) (int64, error)) (claim, error) {
	if err := CheckKey(key); err != nil {
		return claim{}, err
	}
	var c claim
	err := s.db.tx(ctx, func(tx *sql.Tx) error {
		c = claim{}
		var gotOp, gotFP string
		var status sql.NullInt64
		var resp sql.NullString
		err := s.db.queryRow(ctx, tx, `SELECT operation, fingerprint, resource_id, status, response FROM payment_idempotency
			WHERE user_id = ? AND key = ?`+s.db.forUpdate(), user, key).Scan(&gotOp, &gotFP, &c.resourceID, &status, &resp)
		if err == nil {
			if gotOp != op || gotFP != fp {
				return errs.E(errs.Conflict, "this %s was already used with a different request; use a new key for a new operation", IdempotencyHeader)
			}
			if status.Valid && resp.Valid {
				c.reply = &Reply{Status: int(status.Int64), Body: []byte(resp.String), Replayed: true}
			}
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("payment: idempotency key: %w", err)
		}
		id, err := create(tx)
		if err != nil {
			return err
		}
		c.resourceID = id
		res, err := s.db.exec(ctx, tx, `INSERT INTO payment_idempotency(user_id, key, operation, fingerprint, resource_id, created_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, key) DO NOTHING`, user, key, op, fp, id, ms(s.now()))
		if err != nil {
			return fmt.Errorf("payment: idempotency key: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			// A concurrent request with the same key won (Postgres):
			// roll back what create made and let the client retry.
			return errs.E(errs.Conflict, "a request with this %s is in progress; retry it", IdempotencyHeader)
		}
		return nil
	})
	if err == nil && c.reply != nil {
		s.m.replays.Inc()
	}
	return c, err
}

// seal stores the response for (user, key) in tx unless one is stored
// already, and returns the stored one: concurrent requests with one key
// all answer with whichever response was stored first.
func (s *Service) seal(ctx context.Context, tx *sql.Tx, user int64, key string, status int, body any) (Reply, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return Reply{}, fmt.Errorf("payment: response: %w", err)
	}
	if _, err := s.db.exec(ctx, tx, `UPDATE payment_idempotency SET status = ?, response = ? WHERE user_id = ? AND key = ? AND response IS NULL`,
		status, string(b), user, key); err != nil {
		return Reply{}, fmt.Errorf("payment: store response: %w", err)
	}
	var st int64
	var resp string
	if err := s.db.queryRow(ctx, tx, `SELECT status, response FROM payment_idempotency WHERE user_id = ? AND key = ?`, user, key).Scan(&st, &resp); err != nil {
		return Reply{}, fmt.Errorf("payment: store response: %w", err)
	}
	return Reply{Status: int(st), Body: []byte(resp)}, nil
}

// sealError stores a deterministic refusal (a conflict found after the key
// was claimed) as the key's response, like any other outcome.
func (s *Service) sealError(ctx context.Context, user int64, key string, err error) (Reply, error) {
	var r Reply
	txErr := s.db.tx(ctx, func(tx *sql.Tx) error {
		var e error
		r, e = s.seal(ctx, tx, user, key, errs.HTTPStatus(err), map[string]string{"error": errs.Message(err)})
		return e
	})
	return r, txErr
}

// pruneKeys deletes keys older than the TTL.
func (s *Service) pruneKeys(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.db.exec(ctx, tx, `DELETE FROM payment_idempotency WHERE created_at < ?`, ms(s.now().Add(-s.cfg.IdempotencyTTL)))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		_, err = s.db.exec(ctx, tx, `DELETE FROM payment_webhook_events WHERE received_at < ?`, ms(s.now().Add(-s.cfg.IdempotencyTTL)))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("payment: prune keys: %w", err)
	}
	return n, nil
}
