package apache

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// The broker also binds its port minus 2 (the fast remoting server); a pick that leaves it taken
// makes the broker JVM exit at start.
func TestFreePortsLeaveTheFastRemotingPortFree(t *testing.T) {
	p, err := freePorts()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, port := range []int{p.namesrv, p.broker, p.broker - 2, p.ha, p.remoting, p.grpc} {
		if port <= 0 || seen[port] {
			t.Fatalf("ports %+v: %d missing or repeated", p, port)
		}
		seen[port] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("port %d is not free: %v", port, err)
		}
		l.Close()
	}
}

func TestModuleCacheDirIsBesideThePom(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ModuleCacheDir(wd)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := filepath.Abs(".cache"); got != want {
		t.Fatalf("cache dir %s, want %s", got, want)
	}
}
