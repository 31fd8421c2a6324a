//go:build tools

// Package tools pins modules that benchmarks and packages being written
// use, so that go mod tidy keeps them.
package tools

import (
	_ "github.com/SherClockHolmes/webpush-go"
	_ "github.com/axiomhq/hyperloglog"
	_ "github.com/blevesearch/bleve/v2"
	_ "github.com/bwmarrin/snowflake"
	_ "github.com/google/uuid"
	_ "github.com/miekg/dns"
	_ "github.com/parquet-go/parquet-go"
	_ "github.com/sony/sonyflake"
	_ "github.com/stripe/stripe-go/v82"
	_ "github.com/wneessen/go-mail"
	_ "go.etcd.io/etcd/client/v3"
)
