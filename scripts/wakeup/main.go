// Command wakeup measures what a wake-up of a sleeping thread costs on this
// machine: two OS threads play ping-pong over blocking pipes, and each
// round trip (two wake-ups) is timed, first back to back, then after the
// waiting thread has slept for -gap (as a sidecar sleeps while Redis runs a
// script). The two threads run on CPUs 0 and 1 (-cpus 0,1, the default) or
// on one (-cpus 0,0):
//
//	go run ./scripts/wakeup
//	go run ./scripts/wakeup -cpus 0,0
//
// On a VM, a thread woken on another vCPU that has halted in the meantime
// waits for the hypervisor to resume that vCPU; docs/BENCHMARKS.md has the
// figures of the development machine.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	n := flag.Int("n", 5000, "round trips per gap")
	gap := flag.Duration("gap", 300*time.Microsecond, "how long the other thread sleeps before each round trip")
	cpus := flag.String("cpus", "0,1", "the CPUs of the timing thread and of the echoing thread")
	flag.Parse()
	var mine, its int
	if _, err := fmt.Sscanf(*cpus, "%d,%d", &mine, &its); err != nil {
		fmt.Fprintln(os.Stderr, "wakeup: -cpus wants two CPU numbers, like 0,1")
		os.Exit(2)
	}
	if err := run(*n, *gap, mine, its); err != nil {
		fmt.Fprintln(os.Stderr, "wakeup:", err)
		os.Exit(1)
	}
}

// pin locks the calling goroutine to its thread and the thread to cpu.
func pin(cpu int) error {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return nil
}

func run(n int, gap time.Duration, mine, its int) error {
	var ping, pong [2]int
	if err := syscall.Pipe(ping[:]); err != nil {
		return err
	}
	if err := syscall.Pipe(pong[:]); err != nil {
		return err
	}
	defer func() {
		for _, fd := range []int{ping[0], ping[1], pong[0], pong[1]} {
			syscall.Close(fd)
		}
	}()
	// The echoing thread: blocked in read(2) until pinged. It ends when
	// the pipes close.
	pinned := make(chan error, 1)
	go func() {
		pinned <- pin(its)
		buf := make([]byte, 1)
		for {
			if k, err := syscall.Read(ping[0], buf); k != 1 || err != nil {
				return
			}
			if _, err := syscall.Write(pong[1], buf); err != nil {
				return
			}
		}
	}()
	if err := <-pinned; err != nil {
		return err
	}
	if err := pin(mine); err != nil {
		return err
	}
	fmt.Printf("timing thread on CPU %d, echoing thread on CPU %d\n", mine, its)
	buf := make([]byte, 1)
	for _, g := range []time.Duration{0, gap} {
		rtt := make([]time.Duration, n)
		for i := range rtt {
			// Spin rather than sleep, so that only the echoing thread idles.
			for t := time.Now(); time.Since(t) < g; {
			}
			t := time.Now()
			if _, err := syscall.Write(ping[1], buf); err != nil {
				return err
			}
			if _, err := syscall.Read(pong[0], buf); err != nil {
				return err
			}
			rtt[i] = time.Since(t)
		}
		slices.Sort(rtt)
		fmt.Printf("after %-8v idle: round trip p50 %6.1f µs  p90 %6.1f µs  p99 %6.1f µs\n", g,
			us(rtt[n/2]), us(rtt[n*9/10]), us(rtt[n*99/100]))
	}
	return nil
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
