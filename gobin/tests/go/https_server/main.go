// An HTTPS server (net/http over crypto/tls): the program whose TLS functions are found.
// GET /fetch?url=URL fetches URL with net/http's client, so that its client connection's
// functions are linked and found too.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s\n", r.URL.Path)
	})
	http.HandleFunc("/fetch", func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(r.URL.Query().Get("url"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		io.Copy(w, resp.Body)
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
