package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

var errCrash = errors.New("crash")

// base is the fixtures' clock at the first run.
var base = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

type fixture struct {
	db    *sqlstore.DB
	blobs blob.Store
	cfg   Config
	now   time.Time
	// original rows by table and ID.
	rows map[string]map[int64]Row
	// parsed caches the rows of files checkInventory read, by content.
	parsed map[[32]byte][]Row
}

// ensureNotifications creates the notifications table on a PostgreSQL
// store whose migrations lack the port of 0004 (a no-op once they have
// it); on SQLite it exists.
func ensureNotifications(t *testing.T, db *sqlstore.DB) {
	t.Helper()
	if db.Dialect != sqlstore.Postgres {
		return
	}
	if _, err := db.W.Exec(`CREATE TABLE IF NOT EXISTS notifications (
		id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, type TEXT NOT NULL, actor_id BIGINT NOT NULL DEFAULT 0,
		subject_id BIGINT NOT NULL DEFAULT 0, dedup_key TEXT NOT NULL, body TEXT NOT NULL DEFAULT '{}',
		in_app INTEGER NOT NULL DEFAULT 1, created_at BIGINT NOT NULL, read_at BIGINT, UNIQUE (user_id, dedup_key));
		CREATE INDEX IF NOT EXISTS notifications_user ON notifications(user_id, id);
		CREATE INDEX IF NOT EXISTS notifications_created ON notifications(created_at)`); err != nil {
		t.Fatal(err)
	}
}

// setup fills a store with events and notifications: five old days
// (40–44 days before base, to be archived) and two recent ones (hot).
// The same seed gives the same rows.
func setup(t *testing.T) *fixture {
	t.Helper()
	db := testenv.Store(t)
	ensureNotifications(t, db)
	store, err := blob.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, blobs: store, now: base, rows: map[string]map[int64]Row{"events": {}, "notifications": {}}, parsed: map[[32]byte][]Row{},
		cfg: Config{After: 30 * day, Partition: day, RowGroupRows: 16, LeaseTTL: 10 * time.Minute}}
	rng := rand.New(rand.NewPCG(1, 2))
	var times []int64
	for _, d := range []int{44, 43, 42, 41, 40, 1, 0} {
		dayStart := base.Add(-time.Duration(d) * day).Truncate(day).Unix()
		for range 40 {
			times = append(times, dayStart+rng.Int64N(86400))
		}
	}
	rng.Shuffle(len(times), func(i, j int) { times[i], times[j] = times[j], times[i] })
	kinds := []string{"video.uploaded", "video.ready", "video.failed"}
	err = db.Tx(context.Background(), func(tx *sql.Tx) error {
		for i, at := range times {
			subject := int64(1 + rng.IntN(4))
			payload := fmt.Sprintf(`{"n":%d,"text":"é \"quoted\" %s"}`, i, strings.Repeat("x", rng.IntN(40)))
			var id int64
			if err := tx.QueryRow(`INSERT INTO events(kind, subject_id, payload, created_at, published_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
				kinds[i%3], subject, payload, at, at+1).Scan(&id); err != nil {
				return err
			}
			f.rows["events"][id] = Row{id, kinds[i%3], subject, payload, at, at + 1}
		}
		for i, at := range times {
			user := int64(1 + rng.IntN(3))
			id := at*1000 + int64(i) // time-ordered, like idgen's IDs
			inApp := int64(1)
			if i%9 == 0 {
				inApp = 0
			}
			var read any
			if i%4 == 0 {
				read = at + 60
			}
			dedup := fmt.Sprintf("k%d", i)
			body := fmt.Sprintf(`{"title":"n%d"}`, i)
			if _, err := tx.Exec(`INSERT INTO notifications(id, user_id, type, actor_id, subject_id, dedup_key, body, in_app, created_at, read_at)
				VALUES (?, ?, 'comment', 7, ?, ?, ?, ?, ?, ?)`, id, user, int64(i), dedup, body, inApp, at, read); err != nil {
				return err
			}
			f.rows["notifications"][id] = Row{id, user, "comment", int64(7), int64(i), dedup, body, inApp, at, read}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) archiver(t *testing.T) *Archiver {
	t.Helper()
	a, err := New(f.db, f.blobs, f.cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := f.now
	a.now = func() time.Time { return now }
	return a
}

// answers is every query of the test, asked through a Reader.
type answers struct {
	Events        map[string][]Event
	Notifications map[int64][][]Notification
}

func (f *fixture) answers(t *testing.T) answers {
	return f.answersOf(t, []int64{1, 2, 3, 4}, []int64{1, 2, 3})
}

// quickAnswers is a subset of answers, for checks after every crash.
func (f *fixture) quickAnswers(t *testing.T) answers { return f.answersOf(t, []int64{3}, []int64{2}) }

func (f *fixture) answersOf(t *testing.T, subjects, users []int64) answers {
	t.Helper()
	ctx := context.Background()
	r := NewReader(f.db, f.blobs)
	out := answers{Events: map[string][]Event{}, Notifications: map[int64][][]Notification{}}
	windows := [][2]time.Time{
		{time.Unix(0, 0), base.Add(time.Hour)},
		{base.Add(-42*day - 5*time.Hour), base.Add(-41*day + 7*time.Hour)}, // across an archived partition boundary
		{base.Add(-41 * day), base.Add(-day)},                              // both tiers
		{base.Add(-2 * day), base.Add(time.Hour)},                          // hot only
	}
	for _, subject := range subjects {
		for i, w := range windows {
			evs, err := r.Events(ctx, subject, w[0], w[1])
			if err != nil {
				t.Fatal(err)
			}
			out.Events[fmt.Sprintf("%d/%d", subject, i)] = evs
		}
	}
	hot := map[int64]bool{}
	rows, err := f.db.R.Query(`SELECT id FROM notifications`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		hot[id] = true
	}
	rows.Close()
	for _, user := range users {
		var before int64
		for page := 0; ; page++ {
			if page > 100 {
				t.Fatal("notification pages never end")
			}
			ns, next, err := r.Notifications(ctx, user, before, 7)
			if err != nil {
				t.Fatal(err)
			}
			// Archived says which tier answered (a row is in exactly one
			// between runs); the answers compare without it.
			for i := range ns {
				if ns[i].Archived == hot[ns[i].ID] {
					t.Fatalf("notification %d: archived = %v, but in the table = %v", ns[i].ID, ns[i].Archived, hot[ns[i].ID])
				}
				ns[i].Archived = false
			}
			out.Notifications[user] = append(out.Notifications[user], ns)
			if next == 0 {
				break
			}
			before = next
		}
	}
	return out
}

// checkInventory checks that every original row is in exactly one place:
// the table, or the file of an archived partition (a partition exported
// but not yet deleted has its rows in both, by design: its file counts
// only once the rows are gone); and that nothing else is anywhere.
func (f *fixture) checkInventory(t *testing.T, when string) {
	t.Helper()
	ctx := context.Background()
	for _, tb := range []Table{Events, Notifications} {
		seen := map[int64]int{}
		check := func(r Row, where string) {
			id := r[0].(int64)
			seen[id]++
			if want, ok := f.rows[tb.Name][id]; !ok || !reflect.DeepEqual(want, r) {
				t.Fatalf("%s: %s row %d in %s is %v, want %v", when, tb.Name, id, where, r, want)
			}
		}
		rows, err := f.db.R.Query(`SELECT ` + tb.columnList() + ` FROM ` + tb.Name)
		if err != nil {
			t.Fatal(err)
		}
		dest, row := tb.scanner()
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				t.Fatal(err)
			}
			check(row(), "the table")
		}
		rows.Close()
		keys, err := f.db.R.Query(`SELECT object_key FROM archive_partitions WHERE table_name = ? AND state = ?`, tb.Name, StateArchived)
		if err != nil {
			t.Fatal(err)
		}
		var files []string
		for keys.Next() {
			var k string
			keys.Scan(&k)
			files = append(files, k)
		}
		keys.Close()
		for _, k := range files {
			data, err := readObject(ctx, f.blobs, k)
			if err != nil {
				t.Fatalf("%s: archived file %s: %v", when, k, err)
			}
			sum := sha256.Sum256(data)
			rows, ok := f.parsed[sum]
			if !ok {
				if _, err := readFile(data, tb, nil, func(r Row) error { rows = append(rows, r); return nil }); err != nil {
					t.Fatalf("%s: %s: %v", when, k, err)
				}
				f.parsed[sum] = rows
			}
			for _, r := range rows {
				check(r, k)
			}
		}
		for id := range f.rows[tb.Name] {
			switch seen[id] {
			case 0:
				t.Fatalf("%s: %s row %d lost", when, tb.Name, id)
			case 1:
			default:
				t.Fatalf("%s: %s row %d found %d times", when, tb.Name, id, seen[id])
			}
		}
		if len(seen) != len(f.rows[tb.Name]) {
			t.Fatalf("%s: %s has %d rows, want %d", when, tb.Name, len(seen), len(f.rows[tb.Name]))
		}
	}
}

type finalState struct {
	Manifest []string
	Objects  []string
	Hot      map[string]int
}

func (f *fixture) final(t *testing.T) finalState {
	t.Helper()
	ctx := context.Background()
	var st finalState
	rows, err := f.db.R.Query(`SELECT table_name, start_at, end_at, state, object_key, row_count, bytes, checksum, min_id, max_id FROM archive_partitions ORDER BY table_name, start_at`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, state, key, sum string
		var start, end, n, size, lo, hi int64
		if err := rows.Scan(&name, &start, &end, &state, &key, &n, &size, &sum, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		st.Manifest = append(st.Manifest, fmt.Sprintf("%s %d-%d %s %s rows=%d bytes=%d sum=%s ids=%d-%d", name, start, end, state, key, n, size, sum, lo, hi))
	}
	rows.Close()
	objs, err := f.blobs.List(ctx, blob.ColdPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		data, err := readObject(ctx, f.blobs, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		st.Objects = append(st.Objects, fmt.Sprintf("%s %x", o.Key, sha256.Sum256(data)))
	}
	st.Hot = map[string]int{}
	for _, tb := range []string{"events", "notifications"} {
		var n int
		f.db.R.QueryRow(`SELECT COUNT(*) FROM ` + tb).Scan(&n)
		st.Hot[tb] = n
	}
	return st
}

func (f *fixture) runToEnd(t *testing.T) {
	t.Helper()
	a := f.archiver(t)
	for range 10 {
		res, err := a.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if res.Partitions == 0 {
			return
		}
	}
	t.Fatal("runs never ended")
}

// TestArchiveAndReadBothTiers: an uninterrupted run archives the ten old
// partitions and nothing else; every query answers as before; a second
// run does nothing.
func TestArchiveAndReadBothTiers(t *testing.T) {
	f := setup(t)
	before := f.answers(t)
	a := f.archiver(t)
	res, err := a.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Partitions != 10 || res.Rows != 2*5*40 || res.Skipped != 0 {
		t.Fatalf("run: %+v, want 10 partitions of 400 rows", res)
	}
	f.checkInventory(t, "after the run")
	st := f.final(t)
	if st.Hot["events"] != 80 || st.Hot["notifications"] != 80 || len(st.Objects) != 10 {
		t.Fatalf("after the run: %d hot events, %d hot notifications, %d objects; want 80, 80, 10", st.Hot["events"], st.Hot["notifications"], len(st.Objects))
	}
	for _, o := range st.Objects {
		if !strings.HasPrefix(o, "cold/tables/") || !strings.Contains(o, ".parquet ") {
			t.Errorf("object %s", o)
		}
	}
	after := f.answers(t)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("answers changed by archiving:\nbefore %+v\nafter  %+v", before, after)
	}
	if len(after.Events["1/1"]) == 0 || len(after.Notifications[1]) < 3 {
		t.Fatal("the queries answer nothing: the comparison proves nothing")
	}
	res, err = a.RunOnce(context.Background())
	if err != nil || res != (Result{}) {
		t.Fatalf("second run: %+v, %v", res, err)
	}
	if again := f.final(t); !reflect.DeepEqual(st, again) {
		t.Fatal("the second run changed the state")
	}
}

// TestKilledAtEveryStep crashes the job at each of its steps in turn — a
// crash at an upload also leaves half the object behind — and reruns it
// (a new process: the killed run's lease expires first). After every crash
// each row is in exactly one tier and every query answers as before; the
// end state is that of an uninterrupted run, and a further run does
// nothing.
func TestKilledAtEveryStep(t *testing.T) {
	ctx := context.Background()
	ref := setup(t)
	ref.runToEnd(t)
	want := ref.final(t)

	f := setup(t)
	before, quick := f.answers(t), f.quickAnswers(t)
	crashes := 0
	seen := map[string]bool{}
	for round := 0; ; round++ {
		if round > 300 {
			t.Fatal("the job never finished")
		}
		a := f.archiver(t)
		a.crashAt = func(step string) error {
			if seen[step] {
				return nil
			}
			seen[step] = true
			crashes++
			if key, ok := strings.CutPrefix(step[strings.IndexByte(step, ' ')+1:], "uploaded "); ok {
				// The upload died half way (on a store whose writes are not atomic).
				data, err := readObject(ctx, f.blobs, key)
				if err != nil {
					t.Fatal(err)
				}
				f.blobs.Put(ctx, key, bytes.NewReader(data[:len(data)/2]))
			}
			return errCrash
		}
		res, err := a.RunOnce(ctx)
		if err != nil && !errors.Is(err, errCrash) {
			t.Fatalf("round %d: %v", round, err)
		}
		when := fmt.Sprintf("after round %d", round)
		f.checkInventory(t, when)
		if got := f.quickAnswers(t); !reflect.DeepEqual(quick, got) {
			t.Fatalf("%s: the answers changed", when)
		}
		if err == nil && res.Partitions == 0 {
			break
		}
		f.now = f.now.Add(f.cfg.LeaseTTL + time.Second) // the killed process's lease runs out
	}
	t.Logf("%d crashes, one at each step", crashes)
	if crashes < 10*9 {
		t.Errorf("only %d crash points exercised, want 9 for each of 10 partitions", crashes)
	}
	if !reflect.DeepEqual(before, f.answers(t)) {
		t.Fatal("the answers changed")
	}
	got := f.final(t)
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("end state differs from an uninterrupted run's:\nwant %+v\ngot  %+v", want, got)
	}
	res, err := f.archiver(t).RunOnce(ctx)
	if err != nil || res != (Result{}) {
		t.Fatalf("a run after the end: %+v, %v", res, err)
	}
}

// TestLease: a killed run keeps the lease until it expires; another run
// meanwhile is refused.
func TestLease(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	a := f.archiver(t)
	a.crashAt = func(string) error { return errCrash }
	if _, err := a.RunOnce(ctx); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	b := f.archiver(t)
	if _, err := b.RunOnce(ctx); !errors.Is(err, ErrBusy) {
		t.Fatalf("a second run while the lease is held: %v, want ErrBusy", err)
	}
	f.now = f.now.Add(f.cfg.LeaseTTL + time.Second)
	c := f.archiver(t)
	if res, err := c.RunOnce(ctx); err != nil || res.Partitions != 10 {
		t.Fatalf("after the lease expired: %+v, %v", res, err)
	}
	// A finished run releases it at once.
	if _, err := f.archiver(t).RunOnce(ctx); err != nil {
		t.Fatalf("after a finished run: %v", err)
	}
}

// TestUnpublishedEventsWait: a partition holding an event the outbox relay
// has not published stays in the table until it is published.
func TestUnpublishedEventsWait(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	old := base.Add(-42 * day).Truncate(day).Unix()
	if _, err := f.db.W.Exec(`UPDATE events SET published_at = NULL WHERE id = (SELECT MIN(id) FROM events WHERE created_at >= ? AND created_at < ?)`, old, old+86400); err != nil {
		t.Fatal(err)
	}
	res, err := f.archiver(t).RunOnce(ctx)
	if err != nil || res.Partitions != 9 || res.Skipped != 1 {
		t.Fatalf("run: %+v, %v; want 9 archived and 1 skipped", res, err)
	}
	var n int
	f.db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE created_at >= ? AND created_at < ?`, old, old+86400).Scan(&n)
	if n != 40 {
		t.Fatalf("%d rows left in the waiting partition, want 40", n)
	}
	if _, err := f.db.W.Exec(`UPDATE events SET published_at = created_at + 1 WHERE published_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	if res, err = f.archiver(t).RunOnce(ctx); err != nil || res.Partitions != 1 {
		t.Fatalf("after publishing: %+v, %v", res, err)
	}
	f.checkInventory(t, "at the end")
}

// TestRowChangedAfterExport: a notification marked read between the
// export and the delete is not lost: the delete sees that the rows differ
// from the file, deletes nothing, and the next run exports the new state.
func TestRowChangedAfterExport(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	var id, at int64
	if err := f.db.R.QueryRow(`SELECT id, created_at FROM notifications WHERE read_at IS NULL AND in_app = 1 AND created_at < ? ORDER BY id LIMIT 1`,
		base.Add(-40*day).Unix()).Scan(&id, &at); err != nil {
		t.Fatal(err)
	}
	a := f.archiver(t)
	label := time.Unix(at, 0).UTC().Format("2006-01-02")
	a.crashAt = func(step string) error {
		if step == "notifications/"+label+" tmp deleted" {
			if _, err := f.db.W.Exec(`UPDATE notifications SET read_at = 12345 WHERE id = ?`, id); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	}
	res, err := a.RunOnce(ctx)
	if err != nil || res.Partitions != 9 || res.Skipped != 1 {
		t.Fatalf("run: %+v, %v; want 9 archived, 1 left", res, err)
	}
	var state string
	f.db.R.QueryRow(`SELECT state FROM archive_partitions WHERE table_name = 'notifications' AND object_key LIKE ?`, "%"+label+"%").Scan(&state)
	if state != StateExporting {
		t.Fatalf("changed partition is %q, want %q", state, StateExporting)
	}
	res, err = f.archiver(t).RunOnce(ctx)
	if err != nil || res.Partitions != 1 {
		t.Fatalf("second run: %+v, %v", res, err)
	}
	row := f.rows["notifications"][id]
	row[9] = int64(12345)
	f.checkInventory(t, "at the end")
}

// TestCorruptFileIsRedone: a recorded file damaged before the rows were
// deleted is found on the next run's check and exported again; the rows
// are deleted only after that.
func TestCorruptFileIsRedone(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	before := f.answers(t)
	a := f.archiver(t)
	var key string
	a.crashAt = func(step string) error {
		if strings.HasSuffix(step, " recorded") && key == "" {
			p := strings.Fields(step)[0] // table/date
			key = Prefix + p + ".parquet"
			return errCrash
		}
		return nil
	}
	if _, err := a.RunOnce(ctx); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	if _, err := f.blobs.Put(ctx, key, strings.NewReader("PAR1 garbage PAR1")); err != nil {
		t.Fatal(err)
	}
	// Exported but not archived, and the file is bad: the reader answers
	// from the table.
	if !reflect.DeepEqual(before, f.answers(t)) {
		t.Fatal("answers changed while a partition was exported with a bad file")
	}
	f.now = f.now.Add(f.cfg.LeaseTTL + time.Second)
	b := f.archiver(t)
	res, err := b.RunOnce(ctx)
	if err != nil || res.Partitions != 10 {
		t.Fatalf("rerun: %+v, %v", res, err)
	}
	if n := testutil.ToFloat64(b.m.Redone.WithLabelValues(strings.Split(strings.TrimPrefix(key, Prefix), "/")[0])); n != 1 {
		t.Errorf("%v exports redone, want 1", n)
	}
	f.checkInventory(t, "at the end")
	if !reflect.DeepEqual(before, f.answers(t)) {
		t.Fatal("answers changed")
	}
}

// TestReaderSkipsRowGroups: a user's inbox query reads only the row groups
// whose user_id statistics include the user.
func TestReaderSkipsRowGroups(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	f.runToEnd(t)
	total, size := 0, 0
	files, err := NewReader(f.db, f.blobs).files(ctx, Notifications, -1<<62, 1<<62)
	if err != nil || len(files) != 5 {
		t.Fatalf("%d files, %v", len(files), err)
	}
	for _, fp := range files {
		data, err := readObject(ctx, f.blobs, fp.key)
		if err != nil {
			t.Fatal(err)
		}
		size += len(data)
		n, err := readFile(data, Notifications, nil, func(Row) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	r := NewReader(f.db, f.blobs)
	var before int64
	for {
		_, next, err := r.Notifications(ctx, 2, before, 100)
		if err != nil {
			t.Fatal(err)
		}
		if next == 0 {
			break
		}
		before = next
	}
	if got := r.groupsRead.Load(); got == 0 || got >= int64(total) {
		t.Fatalf("read %d of %d row groups for one user", got, total)
	}
	// The files are read by range: the skipped row groups are not read.
	if got := r.bytesRead.Load(); got == 0 || got >= int64(size) {
		t.Fatalf("read %d of the files' %d bytes for one user", got, size)
	}
	t.Logf("read %d of %d row groups, %d of %d bytes", r.groupsRead.Load(), total, r.bytesRead.Load(), size)
}

// TestReadsByRange: a query of one user reads the footer and that user's
// row group of a file, not the file: 200,000 notifications of 5,000
// users (even IDs) in 25 row groups.
func TestReadsByRange(t *testing.T) {
	var buf bytes.Buffer
	fw := newFileWriter(&buf, Notifications, 8192)
	const n = 200_000
	for i := range n {
		user := int64(1000 + 2*(i*5000/n))
		body := fmt.Sprintf(`{"title":"someone commented on your video %d","text":"lorem ipsum dolor sit amet %d"}`, i, i*7)
		if err := fw.write(Row{int64(i + 1), user, "comment", int64(7), int64(i), fmt.Sprintf("k%d", i), body, int64(1), int64(100 + i), nil}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.close(); err != nil {
		t.Fatal(err)
	}
	size := int64(buf.Len())
	read := func(user int64) (bytesRead int64, rows int) {
		var c atomic.Int64
		ra := &countingReaderAt{r: bytes.NewReader(buf.Bytes()), n: &c}
		if _, err := readFileAt(ra, size, Notifications, &user, func(Row) error { rows++; return nil }); err != nil {
			t.Fatal(err)
		}
		return c.Load(), rows
	}
	for _, c := range []struct {
		user    int64
		rows    int
		maxPart int64 // at most size/maxPart bytes read
	}{
		{6000, 40, 8},  // present, in the middle
		{6001, 0, 20},  // absent inside the statistics: the bloom filter
		{99999, 0, 20}, // absent outside them: the footer alone
		{1000, 40, 8},  // the first
		{10998, 40, 8}, // the last
	} {
		got, rows := read(c.user)
		if rows != c.rows || got > size/c.maxPart {
			t.Errorf("user %d: %d rows, %d of %d bytes read; want %d rows, at most 1/%d", c.user, rows, got, size, c.rows, c.maxPart)
		}
		t.Logf("user %d: %d rows, %d of %d bytes read", c.user, rows, got, size)
	}
}

// TestBloomFilterSkipsAbsentValue: a row group whose statistics include
// a user who is not in it is skipped by its bloom filter, unread.
func TestBloomFilterSkipsAbsentValue(t *testing.T) {
	var buf bytes.Buffer
	fw := newFileWriter(&buf, Notifications, 1000)
	for i := range 300 {
		user := int64(1000 + 2*(i%100)) // even users 1000..1198
		if err := fw.write(Row{int64(i + 1), user, "comment", int64(7), int64(i), fmt.Sprintf("k%d", i), "{}", int64(1), int64(100 + i), nil}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.close(); err != nil {
		t.Fatal(err)
	}
	rows := func(user int64) (int, int) {
		n := 0
		groups, err := readFile(buf.Bytes(), Notifications, &user, func(Row) error { n++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		return groups, n
	}
	if groups, n := rows(1100); groups != 1 || n != 3 {
		t.Fatalf("present user: %d row groups read, %d rows; want 1, 3", groups, n)
	}
	skipped := 0
	for user := int64(1001); user < 1199; user += 2 { // odd: inside the statistics, never written
		groups, n := rows(user)
		if n != 0 {
			t.Fatalf("absent user %d: %d rows", user, n)
		}
		if groups == 0 {
			skipped++
		}
	}
	if skipped < 90 {
		t.Fatalf("the bloom filter skipped the row group for %d of 99 absent users", skipped)
	}
}

func TestDigestOrderIndependent(t *testing.T) {
	rows := []Row{
		{int64(1), "a", int64(2), "{}", int64(10), nil},
		{int64(2), "b", int64(2), "", int64(11), int64(12)},
		{int64(3), "", int64(3), "x", int64(12), nil},
	}
	var d1, d2, d3, d4 Digest
	for _, r := range rows {
		d1.Add(Events, r)
	}
	for i := len(rows) - 1; i >= 0; i-- {
		d2.Add(Events, rows[i])
	}
	if d1.Sum() != d2.Sum() || d1.Rows != 3 || d1.MinID != 1 || d1.MaxID != 3 {
		t.Fatalf("order changed the digest: %s %s", d1.Sum(), d2.Sum())
	}
	for _, r := range append(rows, rows[0]) {
		d3.Add(Events, r)
	}
	changed := []Row{rows[0], rows[1], {int64(3), "", int64(3), "y", int64(12), nil}}
	for _, r := range changed {
		d4.Add(Events, r)
	}
	if d3.Sum() == d1.Sum() || d4.Sum() == d1.Sum() {
		t.Fatal("a doubled or changed row left the digest alone")
	}
	// A null and a zero differ; "ab"+"" and "a"+"b" across columns differ.
	var n1, n2 Digest
	n1.Add(Events, Row{int64(1), "ab", int64(2), "", int64(10), nil})
	n2.Add(Events, Row{int64(1), "a", int64(2), "b", int64(10), int64(0)})
	if n1.Sum() == n2.Sum() {
		t.Fatal("distinct rows collide")
	}
}

func TestConfig(t *testing.T) {
	for _, p := range []time.Duration{7 * time.Hour, 36 * time.Hour, 1500 * time.Millisecond} {
		if _, err := New(nil, nil, Config{Partition: p}, slog.New(slog.DiscardHandler), nil); err == nil {
			t.Errorf("partition %s accepted", p)
		}
	}
	for _, p := range []time.Duration{time.Hour, 6 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		if _, err := New(nil, nil, Config{Partition: p}, slog.New(slog.DiscardHandler), nil); err != nil {
			t.Errorf("partition %s: %v", p, err)
		}
	}
	p := partition{t: Events, start: base.Truncate(day).Unix(), end: base.Truncate(day).Unix() + 3600}
	if p.Key() != "cold/tables/events/2026-06-01T0000.parquet" {
		t.Errorf("hourly key %s", p.Key())
	}
	p.end = p.start + 86400
	if p.Key() != "cold/tables/events/2026-06-01.parquet" || blob.CheckKey(p.tmpKey()) != nil {
		t.Errorf("daily key %s", p.Key())
	}
}

// TestMissingTableSkipped: a configured table the database does not have
// (notifications on PostgreSQL before its port) is skipped; the others
// are archived.
func TestMissingTableSkipped(t *testing.T) {
	f := setup(t)
	missing := Notifications
	missing.Name = "no_such_table"
	f.cfg.Tables = []Table{missing, Events}
	res, err := f.archiver(t).RunOnce(context.Background())
	if err != nil || res.Partitions != 5 {
		t.Fatalf("run: %+v, %v; want the 5 events partitions", res, err)
	}
}
