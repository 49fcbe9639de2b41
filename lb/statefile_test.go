package lb

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKeepServerState(t *testing.T) {
	dump := `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 web 1 web-1 10.42.1.2 2 0 100 100 5 15 3 4 6 0 0 0 - 8080 - 0 0 - - 0
3 web 2 web-2 10.42.2.2 2 0 100 100 5 15 3 4 6 0 0 0 - 8080 - 0 0 - - 0
3 web 3 slot2 10.42.3.2 2 4 100 100 5 15 3 4 6 0 0 0 - 8080 - 0 0 - - 0
3 web 4 slot3 127.0.0.1 0 5 100 100 9 1 0 0 14 0 0 0 - 1 - 0 0 - - 0
4 gone 1 g-1 10.42.1.9 2 0 100 100 5 15 3 4 6 0 0 0 - 80 - 0 0 - - 0
`
	next := State{Backends: []Backend{{Name: "web", Slots: 4, Servers: []Server{
		{Name: "web-1", Addr: "10.42.1.2:8080", Enabled: true},  // kept
		{Name: "web-2", Addr: "10.42.2.3:8080", Enabled: true},  // moved: dropped
		{Name: "slot2", Addr: "10.42.3.2:8080", Enabled: false}, // disabled: dropped
	}}}}
	want := `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 web 1 web-1 10.42.1.2 2 0 100 100 5 15 3 4 6 0 0 0 - 8080 - 0 0 - - 0
`
	if diff := cmp.Diff(want, KeepServerState(dump, next)); diff != "" {
		t.Errorf("KeepServerState (-want +got):\n%s", diff)
	}
	if got := KeepServerState("", next); got != "" {
		t.Errorf("empty dump gave %q", got)
	}
}
