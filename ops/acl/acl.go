// Package acl defines the Redis ACL users of a redbandit deployment, with
// least privilege for each role, and writes them as a Redis ACL file.
//
// Roles, all confined to the rb:* keys of redbandit models:
//
//   - serve: reads models and runs the scoring script (EVALSHA, EVALSHA_RO)
//     and function (FCALL_RO); no writes, no EVAL of new code, no KEYS,
//     FLUSH*, CONFIG or other admin commands. Scripts run with the caller's
//     permissions, so even the write script fails with NOPERM for this user.
//     EVALSHA needs the script in Redis's cache (loaded by admin), which a
//     restart empties; FCALL_RO does not (functions persist with the data).
//   - trainer: reads and writes model keys through the write script
//     (EVALSHA, or EVAL when a restart emptied the script cache) and
//     MULTI/EXEC; no admin commands, no FLUSH*, no KEYS.
//   - admin: loads scripts and the function library, reads and deletes model
//     keys, reads INFO; no FLUSH*, CONFIG SET, DEBUG or SHUTDOWN.
//
// The default user is switched off. Passwords are never stored in clear:
// the file holds their SHA-256 (ACL's #<hex> form).
package acl

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Default user names.
const (
	ServeUser   = "rb-serve"
	TrainerUser = "rb-trainer"
	AdminUser   = "rb-admin"
)

// ErrNoPassword reports a role without a password.
var ErrNoPassword = errors.New("acl: missing password")

// connection are the commands every client needs to connect and stay
// connected (rueidis sends HELLO, AUTH and CLIENT SETNAME; PING for health).
const connection = "+hello +auth +ping +select +client|setname +client|getname +client|id +client|info +quit +reset +readonly +readwrite"

// Rules returns the ACL rules (without the password) of each role.
func Rules() map[string]string {
	return map[string]string{
		ServeUser: "resetkeys %R~rb:* resetchannels -@all " + connection +
			" +evalsha +evalsha_ro +fcall_ro +hmget +hget +hexists +hlen",
		TrainerUser: "resetkeys ~rb:* resetchannels -@all " + connection +
			" +evalsha +eval +script|load +script|exists +multi +exec +discard +watch +unwatch" +
			" +hmget +hget +hgetall +hexists +hlen +hset +hdel +hincrby +exists +type",
		AdminUser: "resetkeys ~rb:* resetchannels -@all " + connection +
			" +script|load +script|exists +script|flush +function|load +function|list +function|delete +function|dump +function|restore" +
			" +evalsha +evalsha_ro +fcall_ro +hmget +hget +hgetall +hexists +hlen +hscan +exists +type +del +unlink +scan +info +memory|usage" +
			" +config|get +client|list",
	}
}

// Passwords are the passwords of the three roles.
type Passwords struct {
	Serve, Trainer, Admin string
}

// Write writes an ACL file (for redis.conf's aclfile) with the three users
// and the default user switched off.
func Write(w io.Writer, p Passwords) error {
	rules := Rules()
	users := []struct{ name, password string }{
		{ServeUser, p.Serve}, {TrainerUser, p.Trainer}, {AdminUser, p.Admin},
	}
	var b strings.Builder
	b.WriteString("user default off resetkeys -@all\n")
	for _, u := range users {
		if u.password == "" {
			return fmt.Errorf("%w for %s", ErrNoPassword, u.name)
		}
		sum := sha256.Sum256([]byte(u.password))
		fmt.Fprintf(&b, "user %s on #%s %s\n", u.name, hex.EncodeToString(sum[:]), rules[u.name])
	}
	_, err := io.WriteString(w, b.String())
	return err
}
