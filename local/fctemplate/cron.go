package fctemplate

import (
	"fmt"
	"regexp"
	"strings"
)

// FC's timer trigger documents two forms (help.aliyun.com document 171746), optionally after a
// CRON_TZ=<zone> prefix:
//
//   - six cron fields, seconds first; seconds take a fixed value 0-59 and no special character,
//     while minutes, hours and the rest take , - * / (day-of-month and day-of-week also ?);
//   - @every with a whole number of minutes or hours (@every 5m, @every 1h, @every 1h30m).
//
// So nothing on FC runs more than once a minute. robfig/cron accepts far more (seconds steps, @daily,
// @every 10s); checkCron refuses what FC refuses before robfig parses what remains.
var (
	everyRE    = regexp.MustCompile(`^@every (?:[1-9][0-9]*h)?(?:[1-9][0-9]*m)?$`)
	secondsRE  = regexp.MustCompile(`^(?:[0-9]|[1-5][0-9])$`)
	fieldChars = []struct {
		name    string
		allowed *regexp.Regexp
	}{
		{"minutes", regexp.MustCompile(`^[0-9,*/-]+$`)},
		{"hours", regexp.MustCompile(`^[0-9,*/-]+$`)},
		{"day-of-month", regexp.MustCompile(`^[0-9,*/?-]+$`)},
		{"month", regexp.MustCompile(`^(?i)[0-9A-Z,*/-]+$`)},
		{"day-of-week", regexp.MustCompile(`^(?i)[0-9A-Z,*/?-]+$`)},
	}
)

func checkCron(expr string) error {
	body := strings.TrimSpace(expr)
	if tz, rest, ok := strings.Cut(body, " "); ok && strings.HasPrefix(tz, "CRON_TZ=") {
		body = strings.TrimSpace(rest)
	}
	if strings.HasPrefix(body, "@") {
		if body == "@every " || !everyRE.MatchString(body) {
			return fmt.Errorf("%q: FC's interval form is @every with whole minutes or hours, e.g. @every 1m", body)
		}
		return nil
	}
	fields := strings.Fields(body)
	if len(fields) != 6 {
		return fmt.Errorf("%q: FC's cron has six fields (seconds minutes hours day-of-month month day-of-week), not %d", body, len(fields))
	}
	if !secondsRE.MatchString(fields[0]) {
		return fmt.Errorf("%q: FC's seconds field is a fixed 0-59, not %q: nothing on FC runs more often than once a minute", body, fields[0])
	}
	for i, f := range fieldChars {
		if !f.allowed.MatchString(fields[i+1]) {
			return fmt.Errorf("%q: %s field %q has a character FC does not accept", body, f.name, fields[i+1])
		}
	}
	return nil
}
