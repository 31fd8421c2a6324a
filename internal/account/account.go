// Package account is the account service: sign-up, log-in, sessions and
// the identity the gateway hands to frontend servers.
//
// Passwords are hashed with argon2id (RFC 9106; OWASP's minimum parameters:
// 19 MiB, 2 passes, 1 lane) and stored as PHC strings. A session is a random
// 256-bit token given to the client once — as a bearer token for the API or
// in an HttpOnly cookie for the web pages — and stored only as its SHA-256,
// so a database leak yields no usable tokens. Logging out deletes the row.
package account

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/blueprint-media/blueprint/internal/cache/tier"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Config configures the service.
type Config struct {
	SessionTTL        time.Duration
	MinPasswordLength int
}

// User is an account.
type User struct {
	ID        int64     `json:"id,string"`
	Username  string    `json:"username"`
	Email     string    `json:"email,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Service implements accounts on the SQL store.
type Service struct {
	db       *sqlstore.DB
	ids      *idgen.Generator
	cfg      Config
	now      func() time.Time
	sessions *tier.Tier[CachedSession] // nil: every request reads the database
}

// CachedSession is what the session cache keeps per token: the identity
// and the session's expiry. It is keyed by the hex SHA-256 of the token,
// never the token itself.
type CachedSession struct {
	Identity
	Expires int64 `json:"expires"` // unix seconds
}

// CacheSessionsWith routes Authenticate through t (loaded with
// LoadSession). Unknown tokens are cached as "not found" too, for the
// tier's negative TTL, so guessed tokens cost no database reads; Logout
// invalidates the token in every process.
func (s *Service) CacheSessionsWith(t *tier.Tier[CachedSession]) { s.sessions = t }

// LoadSession reads the session whose token hash is key (hex): the loader
// of the session cache.
func (s *Service) LoadSession(ctx context.Context, key string) (CachedSession, error) {
	hash, err := hex.DecodeString(key)
	if err != nil {
		return CachedSession{}, tier.ErrNotFound
	}
	var cs CachedSession
	err = s.db.R.QueryRowContext(ctx, `SELECT s.id, s.user_id, u.username, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?`,
		hash).Scan(&cs.SessionID, &cs.UserID, &cs.Username, &cs.Expires)
	if errors.Is(err, sql.ErrNoRows) {
		return CachedSession{}, tier.ErrNotFound
	}
	if err != nil {
		return CachedSession{}, errs.Wrap(errs.Unavailable, err, "account store unavailable")
	}
	return cs, nil
}

// New returns a Service.
func New(db *sqlstore.DB, ids *idgen.Generator, cfg Config) *Service {
	return &Service{db: db, ids: ids, cfg: cfg, now: time.Now}
}

var usernameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,31}$`)

// Limits on what a client may send.
const (
	maxPasswordLength = 256
	maxEmailLength    = 254
)

// SignUp creates an account.
func (s *Service) SignUp(ctx context.Context, username, email, password string) (User, error) {
	username, email = strings.TrimSpace(username), strings.TrimSpace(email)
	if !usernameRE.MatchString(username) {
		return User{}, errs.E(errs.Invalid, "username must be 2-32 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email || len(email) > maxEmailLength {
		return User{}, errs.E(errs.Invalid, "email %q is not a valid address", email)
	}
	if len(password) < s.cfg.MinPasswordLength {
		return User{}, errs.E(errs.Invalid, "password must be at least %d characters", s.cfg.MinPasswordLength)
	}
	if len(password) > maxPasswordLength {
		return User{}, errs.E(errs.Invalid, "password must be at most %d characters", maxPasswordLength)
	}
	id, err := s.ids.Next(int(randomShard()))
	if err != nil {
		return User{}, err
	}
	u := User{ID: id, Username: username, Email: email, CreatedAt: s.now().UTC().Truncate(time.Second)}
	hash := HashPassword(password)
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO users(id, username, email, password_hash, created_at) VALUES (?, ?, ?, ?, ?)`,
			u.ID, u.Username, u.Email, hash, u.CreatedAt.Unix()); err != nil {
			return err
		}
		return outbox.Insert(ctx, tx, "user.created", u.ID, map[string]string{"username": u.Username})
	})
	if err != nil {
		if strings.Contains(err.Error(), "users.username") || strings.Contains(err.Error(), "users.email") {
			return User{}, errs.E(errs.Conflict, "username or email is already taken")
		}
		return User{}, fmt.Errorf("account: sign up: %w", err)
	}
	return u, nil
}

// Login checks a username and password and opens a session. It returns the
// session token, which is shown to the client once and never stored.
func (s *Service) Login(ctx context.Context, username, password string) (string, User, error) {
	var u User
	var hash string
	var created int64
	err := s.db.R.QueryRowContext(ctx, `SELECT id, username, email, password_hash, created_at FROM users WHERE username = ?`,
		strings.TrimSpace(username)).Scan(&u.ID, &u.Username, &u.Email, &hash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		CheckPassword(dummyHash(), password) // same work as a real check: no user enumeration by timing
		return "", User{}, errs.E(errs.Unauthorized, "wrong username or password")
	}
	if err != nil {
		return "", User{}, fmt.Errorf("account: login: %w", err)
	}
	if len(password) > maxPasswordLength || !CheckPassword(hash, password) {
		return "", User{}, errs.E(errs.Unauthorized, "wrong username or password")
	}
	u.CreatedAt = time.Unix(created, 0).UTC()
	token, err := s.openSession(ctx, u.ID)
	return token, u, err
}

func (s *Service) openSession(ctx context.Context, userID int64) (string, error) {
	raw := make([]byte, 32)
	rand.Read(raw)
	token := "bp_" + base64.RawURLEncoding.EncodeToString(raw)
	id, err := s.ids.Next(idgen.Shard(userID))
	if err != nil {
		return "", err
	}
	now := s.now()
	_, err = s.db.W.ExecContext(ctx, `INSERT INTO sessions(id, token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		id, tokenHash(token), userID, now.Unix(), now.Add(s.cfg.SessionTTL).Unix())
	if err != nil {
		return "", fmt.Errorf("account: session: %w", err)
	}
	return token, nil
}

// Identity is who a request comes from.
type Identity struct {
	UserID    int64
	Username  string
	SessionID int64
}

// Authenticate resolves a session token.
func (s *Service) Authenticate(ctx context.Context, token string) (Identity, error) {
	if !strings.HasPrefix(token, "bp_") || len(token) > 64 {
		return Identity{}, errs.E(errs.Unauthorized, "invalid token")
	}
	key := hex.EncodeToString(tokenHash(token))
	var cs CachedSession
	var err error
	if s.sessions != nil {
		cs, err = s.sessions.Get(ctx, key)
	} else {
		cs, err = s.LoadSession(ctx, key)
	}
	if errors.Is(err, tier.ErrNotFound) {
		return Identity{}, errs.E(errs.Unauthorized, "invalid or expired token")
	}
	if err != nil {
		return Identity{}, errs.Wrap(errs.Unavailable, err, "account store unavailable")
	}
	if s.now().Unix() >= cs.Expires {
		return Identity{}, errs.E(errs.Unauthorized, "invalid or expired token")
	}
	return cs.Identity, nil
}

// Logout ends the session of token.
func (s *Service) Logout(ctx context.Context, token string) error {
	_, err := s.db.W.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, tokenHash(token))
	if err != nil {
		return fmt.Errorf("account: logout: %w", err)
	}
	if s.sessions != nil {
		if err := s.sessions.Delete(ctx, hex.EncodeToString(tokenHash(token))); err != nil {
			return fmt.Errorf("account: logout: session cache: %w", err)
		}
	}
	return nil
}

// DeleteExpiredSessions removes sessions past their expiry and returns how
// many it removed.
func (s *Service) DeleteExpiredSessions(ctx context.Context) (int64, error) {
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, s.now().Unix())
	if err != nil {
		return 0, fmt.Errorf("account: expire sessions: %w", err)
	}
	return res.RowsAffected()
}

// User returns the account with the given ID.
func (s *Service) User(ctx context.Context, id int64) (User, error) {
	var u User
	var created int64
	err := s.db.Read(ctx).QueryRowContext(ctx, `SELECT id, username, email, created_at FROM users WHERE id = ?`, id).
		Scan(&u.ID, &u.Username, &u.Email, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, errs.E(errs.NotFound, "no such user")
	}
	if err != nil {
		return User{}, fmt.Errorf("account: user: %w", err)
	}
	u.CreatedAt = time.Unix(created, 0).UTC()
	return u, nil
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func randomShard() uint16 {
	var b [2]byte
	rand.Read(b[:])
	return (uint16(b[0])<<8 | uint16(b[1])) & idgen.MaxShard
}

// argon2id parameters (OWASP password storage cheat sheet minimum).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
)

// dummyHash is checked against when the user does not exist, computed on
// first use rather than at program start.
var dummyHash = sync.OnceValue(func() string { return HashPassword("blueprint-dummy-password") })

// HashPassword returns the argon2id PHC string of password with a random salt.
func HashPassword(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// CheckPassword reports whether password matches the PHC string hash.
func CheckPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var version int
	var mem, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &p); err != nil || mem > 1<<18 || t > 10 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(key) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, mem, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}
