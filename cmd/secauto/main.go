// Command secauto runs security automation playbooks as jobs ("secauto
// serve") and administers their job store; see "secauto --help".
package main

import (
	"os"

	"github.com/secauto/secauto/pkg/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
