package testutil

import specs "github.com/opencontainers/runtime-spec/specs-go"

// DockerDeviceRules returns the device rules docker writes in every spec:
// deny all, then mknod of any node and its allow list (null, zero, full,
// random, urandom, tty, pts, ptmx, tun). Each call returns a new slice, so a
// test may change its copy.
func DockerDeviceRules() []specs.LinuxDeviceCgroup {
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Access: "m"},
		{Allow: true, Type: "b", Access: "m"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(8), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(7), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(5), Minor: i64(0), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(5), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(9), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(136), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(5), Minor: i64(2), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(10), Minor: i64(200), Access: "rwm"},
	}
}

func i64(v int64) *int64 { return &v }
