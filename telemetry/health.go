package telemetry

import (
	"encoding/json"
	"net/http"
)

// HandleHealth registers SPIRE's health check paths on mux: livePath
// answers 200 while the process serves; readyPath answers 200 while ready
// reports true and 500 otherwise. Both bodies are small JSON objects,
// {"live":true} and {"ready":true|false}.
func HandleHealth(mux *http.ServeMux, livePath, readyPath string, ready func() bool) {
	mux.HandleFunc(livePath, func(w http.ResponseWriter, _ *http.Request) { replyHealth(w, "live", true) })
	mux.HandleFunc(readyPath, func(w http.ResponseWriter, _ *http.Request) { replyHealth(w, "ready", ready()) })
}

func replyHealth(w http.ResponseWriter, key string, ok bool) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusInternalServerError)
	}
	_ = json.NewEncoder(w).Encode(map[string]bool{key: ok})
}
