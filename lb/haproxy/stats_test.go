package haproxy

import "testing"

func TestParseStats(t *testing.T) {
	out := "# pxname,svname,qcur,scur,stot,ereq,econ,eresp,req_tot,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,rtime,\n" +
		"http_80,FRONTEND,,1,120,2,,,118,0,100,10,6,2,0,,\n" +
		"web,web-1,0,0,60,,1,0,59,0,55,0,3,1,0,12,\n" +
		"web,BACKEND,0,0,118,,1,0,118,0,100,10,6,2,0,11,\n" +
		"pg,BACKEND,0,0,7,,0,0,,,,,,,,0,\n"
	rows := ParseStats(out)
	if len(rows) != 4 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	fe, srv, pg := rows[0], rows[1], rows[3]
	if fe.Kind != "frontend" || fe.Requests != 118 || fe.ErrReq != 2 || fe.Responses["2xx"] != 100 || fe.Responses["5xx"] != 2 {
		t.Errorf("frontend %+v", fe)
	}
	if srv.Kind != "server" || srv.Server != "web-1" || srv.Requests != 59 || srv.ErrConn != 1 || srv.RTimeMs != 12 {
		t.Errorf("server %+v", srv)
	}
	if pg.Kind != "backend" || pg.Requests != 7 || pg.Responses != nil {
		t.Errorf("tcp backend %+v (sessions, no http classes)", pg)
	}
}
