//go:build tools

package tools

import (
	_ "github.com/anishathalye/porcupine"
	_ "github.com/bwmarrin/snowflake"
	_ "github.com/dgraph-io/ristretto/v2"
	_ "github.com/google/uuid"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/maypok86/otter/v2"
	_ "github.com/sony/sonyflake"
	_ "go.etcd.io/etcd/client/v3"
)
