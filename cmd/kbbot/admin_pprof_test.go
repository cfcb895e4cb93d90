package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The admin listener's profiles answer with data; an unknown one is 404.
func TestAdminProfiles(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/profile", profileHandler)
	mux.HandleFunc("GET /debug/pprof/trace", traceHandler)
	mux.HandleFunc("GET /debug/pprof/{name}", namedProfileHandler)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/debug/pprof/profile?seconds=1", 200},
		{"/debug/pprof/trace?seconds=1", 200},
		{"/debug/pprof/heap", 200},
		{"/debug/pprof/goroutine", 200},
		{"/debug/pprof/nonsense", 404},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.status || (tc.status == 200 && rec.Body.Len() == 0) {
			t.Errorf("%s: %d with %d bytes, want %d and a profile", tc.path, rec.Code, rec.Body.Len(), tc.status)
		}
	}
}
