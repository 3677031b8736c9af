// The listener: TLS and plaintext on one port, told apart by each connection's first byte, as the
// official clients always dial TLS.

package rocketmq

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"time"
)

// sniffListener hands gRPC each connection once its first byte says whether it is TLS. The sniff
// runs per connection, so a client that connects and stays silent delays nobody else.
type sniffListener struct {
	net.Listener
	tls   *tls.Config
	once  sync.Once
	conns chan net.Conn
	errs  chan error
}

func (l *sniffListener) start() {
	l.conns, l.errs = make(chan net.Conn), make(chan error, 1)
	go func() {
		for {
			c, err := l.Listener.Accept()
			if err != nil {
				l.errs <- err
				return
			}
			go l.sniff(c)
		}
	}()
}

func (l *sniffListener) sniff(c net.Conn) {
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return
	}
	var conn net.Conn = &peekedConn{Conn: c, r: br}
	if first[0] == 0x16 { // a TLS handshake record
		conn = tls.Server(conn, l.tls)
	}
	select {
	case l.conns <- conn:
	case err := <-l.errs:
		l.errs <- err
		conn.Close()
	}
}

func (l *sniffListener) Accept() (net.Conn, error) {
	l.once.Do(l.start)
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		l.errs <- err // every later Accept sees it too
		return nil, err
	}
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "rocketmq-local"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
