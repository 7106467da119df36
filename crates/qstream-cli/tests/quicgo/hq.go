// An hq-interop (HTTP/0.9 over QUIC) client and server on quic-go, a QUIC stack nobody here
// wrote, for the interop tests in ../interop.rs. Built against Debian's quic-go package in
// GOPATH mode (GO111MODULE=off GOPATH=/usr/share/gocode), with its own interop/http09 package.
//
//	hq server -listen HOST:PORT -www DIR -cert PEM -key PEM [-retry]
//	hq client -downloads DIR [-resume] [-zerortt] URL...
//
// The server prints "listening" once its socket is bound. With -resume the client makes a
// second connection for the URLs after the first, resuming the first's TLS session (-zerortt:
// its requests in 0-RTT), and prints "resumed: true|false" for it. The client exits 1 unless
// every file arrived.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lucas-clemente/quic-go"
	"github.com/lucas-clemente/quic-go/interop/http09"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hq server|client ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = serve(os.Args[2:])
	case "client":
		err = fetch(os.Args[2:])
	default:
		err = errors.New("unknown role " + os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	flags := flag.NewFlagSet("server", flag.ExitOnError)
	listen := flags.String("listen", "", "address to listen on")
	www := flags.String("www", "", "directory to serve")
	certFile := flags.String("cert", "", "certificate chain, PEM")
	keyFile := flags.String("key", "", "private key, PEM")
	retry := flags.Bool("retry", false, "send a Retry to every client")
	flags.Parse(args)
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	server := http09.Server{
		Server: &http.Server{
			Addr:      *listen,
			Handler:   http.FileServer(http.Dir(*www)),
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		},
		QuicConfig: &quic.Config{
			RequireAddressValidation: func(net.Addr) bool { return *retry },
			MaxIdleTimeout:           10 * time.Second,
		},
	}
	_, port, err := net.SplitHostPort(*listen)
	if err != nil {
		return err
	}
	number, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	failed := make(chan error, 1)
	go func() { failed <- server.ListenAndServe() }()
	// The server binds its socket itself; the kernel's socket table says when it has.
	// (Binding the port here to find out would race with the server's own bind.)
	for !udpPortBound(number) {
		select {
		case err := <-failed:
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
	fmt.Fprintln(os.Stderr, "listening")
	return <-failed
}

// udpPortBound says whether a UDP socket of this machine is bound to local port `port`
// (Linux: /proc/net/udp and udp6, whose local_address column is ADDRESS:PORT in hex).
func udpPortBound(port int) bool {
	suffix := fmt.Sprintf(":%04X", port)
	for _, table := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		text, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(text), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 1 && strings.HasSuffix(fields[1], suffix) {
				return true
			}
		}
	}
	return false
}

// sessions is a client session cache that says when a ticket arrived.
type sessions struct {
	tls.ClientSessionCache
	arrived chan struct{}
}

func (s *sessions) Put(key string, state *tls.ClientSessionState) {
	s.ClientSessionCache.Put(key, state)
	select {
	case s.arrived <- struct{}{}:
	default:
	}
}

func fetch(args []string) error {
	flags := flag.NewFlagSet("client", flag.ExitOnError)
	downloads := flags.String("downloads", "", "directory to download into")
	resume := flags.Bool("resume", false, "fetch all but the first URL on a resumed connection")
	zeroRTT := flags.Bool("zerortt", false, "with -resume: send those requests in 0-RTT")
	flags.Parse(args)
	urls := flags.Args()
	cache := &sessions{tls.NewLRUClientSessionCache(4), make(chan struct{}, 1)}
	var resumed bool
	tlsConf := &tls.Config{
		InsecureSkipVerify: true,
		ClientSessionCache: cache,
		VerifyConnection: func(state tls.ConnectionState) error {
			resumed = state.DidResume
			return nil
		},
	}
	quicConf := &quic.Config{MaxIdleTimeout: 10 * time.Second}
	if !*resume {
		client := &http09.RoundTripper{TLSClientConfig: tlsConf, QuicConfig: quicConf}
		defer client.Close()
		return download(client, urls, *downloads, http.MethodGet)
	}
	if len(urls) < 2 {
		return errors.New("-resume needs two URLs or more")
	}
	first := &http09.RoundTripper{TLSClientConfig: tlsConf, QuicConfig: quicConf}
	if err := download(first, urls[:1], *downloads, http.MethodGet); err != nil {
		return err
	}
	select {
	case <-cache.arrived:
	case <-time.After(5 * time.Second):
		return errors.New("no session ticket within 5 s")
	}
	first.Close()
	method := http.MethodGet
	if *zeroRTT {
		method = http09.MethodGet0RTT
	}
	second := &http09.RoundTripper{TLSClientConfig: tlsConf, QuicConfig: quicConf}
	defer second.Close()
	err := download(second, urls[1:], *downloads, method)
	fmt.Fprintf(os.Stderr, "resumed: %v\n", resumed)
	return err
}

// download fetches every URL concurrently into dir, each file under its base name.
func download(client http.RoundTripper, urls []string, dir string, method string) error {
	var wait sync.WaitGroup
	errs := make(chan error, len(urls))
	for _, url := range urls {
		wait.Add(1)
		go func(url string) {
			defer wait.Done()
			errs <- downloadOne(client, url, dir, method)
		}(url)
	}
	wait.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func downloadOne(client http.RoundTripper, url string, dir string, method string) error {
	request, err := http.NewRequest(method, url, nil)
	if err != nil {
		return err
	}
	response, err := client.RoundTrip(request)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	defer response.Body.Close()
	file, err := os.Create(path.Join(dir, path.Base(request.URL.Path)))
	if err != nil {
		return err
	}
	defer file.Close()
	if _, err := io.Copy(file, response.Body); err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	return nil
}
