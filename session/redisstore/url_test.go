package redisstore

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want target
	}{
		{"redis://localhost", target{addrs: []string{"localhost:6379"}}},
		{"redis://h:7000/3", target{addrs: []string{"h:7000"}, db: 3}},
		{"redis://h?db=2", target{addrs: []string{"h:6379"}, db: 2}},
		{"redis://:p%40ss@h/0", target{addrs: []string{"h:6379"}, password: "p@ss"}},
		{"rediss://u:p@h:6380/", target{tls: true, addrs: []string{"h:6380"}, username: "u", password: "p"}},
		{"redis://[::1]:7000", target{addrs: []string{"[::1]:7000"}}},
		{"redis://[::1]", target{addrs: []string{"[::1]:6379"}}},
		{"redis-sentinel://s1,s2:26380/mymaster?db=1", target{mode: modeSentinel, addrs: []string{"s1:26379", "s2:26380"}, masterSet: "mymaster", db: 1}},
		{"rediss-sentinel://u:p@s1/m", target{mode: modeSentinel, tls: true, addrs: []string{"s1:26379"}, masterSet: "m", username: "u", password: "p"}},
		{"redis-cluster://[::1]:7000,h2:7001,h3", target{mode: modeCluster, addrs: []string{"[::1]:7000", "h2:7001", "h3:6379"}}},
		{"REDISS-CLUSTER://h1:7000/0", target{mode: modeCluster, tls: true, addrs: []string{"h1:7000"}}},
	} {
		got, err := parseURL(tc.url)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.url, *got, tc.want)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, bad := range []string{
		"",
		"localhost:6379",
		"http://h",
		"redis://h1,h2",
		"redis://h:0",
		"redis://h:x",
		"redis://h/x",
		"redis://h/1/2",
		"redis://h/1?db=2",
		"redis://h?master_set=m",
		"redis://h?db=-1",
		"redis://::1",
		"redis://h1,,h2",
		"redis://",
		"redis-sentinel://s1",
		"redis-sentinel://s1/m/0",
		"redis-cluster://h1/2",
		"redis-cluster://h1?db=1",
		"redis://u:hunter2@h:99999",
		"redis://u:hunter2@h#frag",
		"redis://u:hunter2@h/%zz",
	} {
		_, err := parseURL(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: error reveals the password: %v", bad, err)
		}
		t.Logf("%q: %v", bad, err)
	}
}
