// Command blueprint runs the Blueprint media platform: with no arguments,
// every role on one machine on embedded engines. See "blueprint help".
package main

import (
	"os"

	"github.com/blueprint-media/blueprint/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
