// A program without crypto/tls: nothing to hook.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("no TLS here", len(os.Args))
}
