package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
)

// startPostgres runs a throwaway PostgreSQL server (initdb + pg_ctl, temp
// dir, free loopback port, fsync on; as the postgres user when run as
// root) and returns its DSN and a function that stops it.
func startPostgres() (string, func(), error) {
	if _, err := exec.LookPath("initdb"); err != nil {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Strings(dirs)
		if len(dirs) == 0 {
			return "", nil, fmt.Errorf("initdb not found: apt-get install postgresql (or pass -pg DSN)")
		}
		os.Setenv("PATH", os.Getenv("PATH")+":"+dirs[len(dirs)-1])
	}
	dir, err := os.MkdirTemp("", "bench-search-pg-")
	if err != nil {
		return "", nil, err
	}
	run := func(name string, args ...string) *exec.Cmd {
		if os.Geteuid() != 0 {
			return exec.Command(name, args...)
		}
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return "", nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		os.Chmod(dir, 0o755)
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c shared_buffers=256MB", port, dir)
	if out, err := run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	stop := func() {
		run("pg_ctl", "-D", data, "-m", "fast", "stop").Run()
		os.RemoveAll(dir)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), stop, nil
}
