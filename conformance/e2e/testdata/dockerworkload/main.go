// Command dockerworkload is the workload of the docker end-to-end test:
// run in a container, it fetches its X.509-SVID from the agent socket
// mounted at the path given as its argument and prints the SPIFFE ID (or
// the error), then exits.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+os.Args[1]))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("spiffe-id:", svid.ID)
}
