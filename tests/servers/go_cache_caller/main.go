// A Go HTTP/1 server whose handler calls Redis on its own goroutine, as
// database drivers do (a pool of connections, a write and a read per
// command): GET /item/KEY does SET k:KEY KEY, then GET k:KEY, and answers
// with the value. go_cache_caller ADDR REDIS_ADDR [CERT KEY]: with a
// certificate and key, HTTPS (HTTP/1.1 and h2, net/http's own choice).
// With http://HOST:PORT (or https://) for REDIS_ADDR, the handler calls GET
// http://HOST:PORT/echo/KEY with net/http's client instead, and answers
// with its body.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

type redisConn struct {
	conn   net.Conn
	reader *bufio.Reader
}

// Connections back from a request; a new one when none is free.
var idle = make(chan *redisConn, 256)

func take(addr string) (*redisConn, error) {
	select {
	case c := <-idle:
		return c, nil
	default:
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &redisConn{conn, bufio.NewReader(conn)}, nil
}

func give(c *redisConn) {
	select {
	case idle <- c:
	default:
		c.conn.Close()
	}
}

// One command, its reply's first line (and a bulk string's value).
func (c *redisConn) do(args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := c.reader.ReadString('\n')
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(line, "$") && !strings.HasPrefix(line, "$-1") {
		value, err := c.reader.ReadString('\n')
		return strings.TrimSpace(value), err
	}
	return strings.TrimSpace(line), nil
}

// The body of GET url, through net/http's client (its connection's
// writeLoop and readLoop goroutines move the bytes).
func fetch(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body)), err
}

func main() {
	redisAddr := os.Args[2]
	http.HandleFunc("/item/", func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/item/")
		if strings.HasPrefix(redisAddr, "http://") || strings.HasPrefix(redisAddr, "https://") {
			value, err := fetch(redisAddr + "/echo/" + key)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			fmt.Fprintf(w, "%s\n", value)
			return
		}
		c, err := take(redisAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		value := ""
		if _, err = c.do("SET", "k:"+key, key); err == nil {
			value, err = c.do("GET", "k:"+key)
		}
		if err != nil {
			c.conn.Close()
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		give(c)
		fmt.Fprintf(w, "%s\n", value)
	})
	var err error
	if len(os.Args) > 4 {
		err = http.ListenAndServeTLS(os.Args[1], os.Args[3], os.Args[4], nil)
	} else {
		err = http.ListenAndServe(os.Args[1], nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
