// An HTTPS server (net/http over crypto/tls): the program whose TLS functions are found.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s\n", r.URL.Path)
	})
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: https_server ADDR CERT KEY")
		os.Exit(2)
	}
	if err := http.ListenAndServeTLS(os.Args[1], os.Args[2], os.Args[3], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
