// Streams chunked responses the way Go net/http handlers do: GET
// /stream/<seed> writes 1 to 8 pieces of 1 byte to 20 KB, flushing after
// some, some 2 ms apart; /write/<n> is one Write of n bytes, /json/<n> a
// json.Encoder of n items, /lines/<n> n Fprintf lines (Go buffers 2 KiB
// chunks and writes 4 KiB at a time, so its writes start amid a chunk).
// Usage: stream_server PORT
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

type item struct {
	ID   int      `json:"id"`
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

func number(r *http.Request, prefix string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, prefix))
	return n
}

func main() {
	sizes := []int{1, 10, 100, 400, 600, 1500, 5000, 20000}
	http.HandleFunc("/stream/", func(w http.ResponseWriter, r *http.Request) {
		x := uint32(number(r, "/stream/"))
		if x == 0 {
			x = 1
		}
		next := func() uint32 { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x }
		pieces := 1 + next()%8
		for i := uint32(0); i < pieces; i++ {
			w.Write([]byte(strings.Repeat("a", sizes[next()%8])))
			switch next() % 3 {
			case 1:
				w.(http.Flusher).Flush()
			case 2:
				w.(http.Flusher).Flush()
				time.Sleep(2 * time.Millisecond)
			}
		}
	})
	http.HandleFunc("/write/", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("a", number(r, "/write/"))))
	})
	http.HandleFunc("/json/", func(w http.ResponseWriter, r *http.Request) {
		items := make([]item, number(r, "/json/"))
		for i := range items {
			items[i] = item{i, "item number " + strconv.Itoa(i), []string{"x", "y"}}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(items)
	})
	http.HandleFunc("/lines/", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < number(r, "/lines/"); i++ {
			fmt.Fprintf(w, "line %d of the response body\n", i)
		}
	})
	fmt.Println("listening")
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
