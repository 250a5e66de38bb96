package lua

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"
)

// The function library is recommend.lua wrapped in a function, so script
// and function cannot drift; the SHA is the script's own.
func TestLibraryAndSHA(t *testing.T) {
	src := RecommendSource()
	if !strings.HasPrefix(src, "#!lua flags=no-writes\n") {
		t.Fatalf("recommend.lua must start with the no-writes shebang, starts with %q", src[:min(30, len(src))])
	}
	sum := sha1.Sum([]byte(src))
	if RecommendSHA() != hex.EncodeToString(sum[:]) {
		t.Fatal("RecommendSHA is not the SHA1 of recommend.lua")
	}
	lib := Library()
	body := src[strings.IndexByte(src, '\n')+1:]
	for _, want := range []string{"#!lua name=" + LibraryName + "\n", body, "function_name='" + RecommendFunction + "'", "flags={'no-writes'}"} {
		if !strings.Contains(lib, want) {
			t.Errorf("the library lacks %.60q", want)
		}
	}
	if strings.Count(lib, "#!lua") != 1 {
		t.Error("the library has more than one shebang")
	}
}
