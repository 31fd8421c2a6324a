package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// PG is one throwaway PostgreSQL server of a PGCluster.
type PG struct {
	URL  string
	Port int
	Data string
	dir  string
}

// PGCluster is a throwaway primary with streaming replicas.
type PGCluster struct {
	Primary  *PG
	Replicas []*PG
	dir      string
}

func pgAs(name string, args ...string) *exec.Cmd {
	if os.Geteuid() != 0 {
		return exec.Command(name, args...)
	}
	return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
}

// pgTempDir checks that the PostgreSQL programs bins are on PATH and makes
// a temporary directory (removed when the test ends) that the server may
// write: owned by the postgres user when run as root, since PostgreSQL
// refuses to run as root.
func pgTempDir(t testing.TB, prefix string, bins ...string) string {
	t.Helper()
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found on PATH: apt-get install postgresql and put its bin directory (/usr/lib/postgresql/15/bin) on PATH (make test does both)", bin)
		}
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user (apt-get install postgresql): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// StartPGCluster starts a PostgreSQL primary and n streaming replicas
// (pg_basebackup -R, hot standby), each on a free port in its own data
// directory, as the postgres user when root; all are stopped when the test
// ends. The replicas are connected and streaming when it returns.
func StartPGCluster(t testing.TB, n int) *PGCluster {
	t.Helper()
	dir := pgTempDir(t, "testenv-pgc-", "initdb", "pg_ctl", "pg_basebackup")
	c := &PGCluster{dir: dir}
	primary := &PG{Port: FreePort(t), Data: filepath.Join(dir, "primary"), dir: dir}
	if out, err := pgAs("initdb", "-D", primary.Data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.Primary = primary
	c.Start(t, primary)
	for i := range n {
		r := &PG{Port: FreePort(t), Data: filepath.Join(dir, fmt.Sprint("replica", i+1)), dir: dir}
		if out, err := pgAs("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port), "-U", "postgres",
			"-D", r.Data, "-R", "-X", "stream", "--no-sync").CombinedOutput(); err != nil {
			t.Fatalf("pg_basebackup: %v\n%s", err, out)
		}
		c.Start(t, r)
		c.Replicas = append(c.Replicas, r)
	}
	t.Cleanup(func() {
		for _, p := range append([]*PG{c.Primary}, c.Replicas...) {
			pgAs("pg_ctl", "-D", p.Data, "-m", "immediate", "stop").Run()
		}
	})
	return c
}

// Start starts (or restarts) one server of the cluster.
func (c *PGCluster) Start(t testing.TB, p *PG) {
	t.Helper()
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c max_connections=100 -c fsync=off -c full_page_writes=off -c wal_level=replica -c max_wal_senders=10 -c hot_standby=on -c wal_receiver_status_interval=1s",
		p.Port, p.dir)
	logf := p.Data + ".log"
	if out, err := pgAs("pg_ctl", "-D", p.Data, "-o", opts, "-l", logf, "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logf)
		t.Fatalf("pg_ctl start %s: %v\n%s\n%s", p.Data, err, out, log)
	}
	p.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
}

// Stop stops one server at once (as a crash would).
func (c *PGCluster) Stop(t testing.TB, p *PG) {
	t.Helper()
	if out, err := pgAs("pg_ctl", "-D", p.Data, "-m", "immediate", "stop").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Promote promotes a replica to primary (pg_ctl promote), as an operator
// or Patroni would after the primary failed.
func (c *PGCluster) Promote(t testing.TB, p *PG) {
	t.Helper()
	if out, err := pgAs("pg_ctl", "-D", p.Data, "-w", "promote").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl promote: %v\n%s", err, out)
	}
}
