// A Go net/http HTTPS server for the Go TLS tests: go_https ADDR CERT KEY.
// /hello answers a fixed text, /status/N answers status N, /echo returns the
// request body, and /call?port=P makes an HTTPS client request (Go's own
// net/http client over crypto/tls, HTTP/1.1; with &h2=1, h2) to
// https://127.0.0.1:P/hello and relays
// its status: the same binary is then both a TLS server and a TLS client.
// /zerotrace.test.Echo/Say answers like a gRPC server (application/grpc,
// the request's message echoed, grpc-status 0 in the trailers; any other
// method of that service: grpc-status 5) through net/http's own HTTP/2.
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: go_https ADDR CERT KEY")
		os.Exit(2)
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: false,
	}}
	h2Client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from go\n")
	})
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		if err != nil || code < 200 || code > 599 {
			code = 400
		}
		w.WriteHeader(code)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("/zerotrace.test.Echo/", func(w http.ResponseWriter, r *http.Request) {
		message, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.WriteHeader(http.StatusOK)
		// Headers out now, as gRPC servers send them: without it net/http
		// declares a content-length, and curl, satisfied by the body, may
		// close before the trailers are written.
		w.(http.Flusher).Flush()
		if r.URL.Path == "/zerotrace.test.Echo/Say" {
			w.Write(message)
			w.Header().Set("Grpc-Status", "0")
			return
		}
		w.Header().Set("Grpc-Status", "5")
		w.Header().Set("Grpc-Message", "no such method")
	})
	mux.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		caller := client
		if r.URL.Query().Get("h2") != "" {
			caller = h2Client
		}
		resp, err := caller.Get("https://127.0.0.1:" + r.URL.Query().Get("port") + "/hello")
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	})
	err := http.ListenAndServeTLS(os.Args[1], os.Args[2], os.Args[3], mux)
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
