//go:build tools

package tools

import (
	_ "github.com/bwmarrin/snowflake"
	_ "github.com/google/uuid"
	_ "github.com/sony/sonyflake"
	_ "go.etcd.io/etcd/client/v3"
)
