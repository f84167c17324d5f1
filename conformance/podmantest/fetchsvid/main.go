// Command fetchsvid is the workload of the container tests: run in a
// container, it fetches its X.509-SVID from the Workload API socket at
// the path given as its first argument, trying again for the number of
// seconds given as its second (default 0: once), and prints "spiffe-id:
// <id>" or "error: <error>".
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	wait := 0
	if len(os.Args) > 2 {
		wait, _ = strconv.Atoi(os.Args[2])
	}
	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+os.Args[1]))
		cancel()
		if err == nil {
			fmt.Println("spiffe-id:", svid.ID)
			return
		}
		if time.Now().After(deadline) {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
