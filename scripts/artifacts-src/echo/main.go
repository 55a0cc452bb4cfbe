// hzcloud-echo is the lab's test service: GET / answers "hzcloud-echo <hostname>", so a test can
// see which pod answered; GET /healthz answers "ok" for probes; GET /resolve?name=NAME answers
// the addresses the pod's resolver finds for NAME (the cluster DNS, through the pod's
// resolv.conf and its search domains), one per line, or 404. Static, no dependencies.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := ":8080"
	if v := os.Getenv("HZCLOUD_ECHO_ADDR"); v != "" {
		addr = v
	}
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println("hzcloud-echo", version)
		return
	}
	hostname, err := os.Hostname()
	if err != nil {
		log.Fatalf("hostname: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/resolve", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			http.Error(w, "resolve?name=NAME", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		for _, a := range addrs {
			fmt.Fprintln(w, a)
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hzcloud-echo %s\n", hostname)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	// Kubernetes stops a pod with SIGTERM: finish in-flight requests, then exit 0.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("hzcloud-echo %s listening on %s", version, addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

var version = "dev"
