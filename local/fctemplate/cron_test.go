package fctemplate

import (
	"strings"
	"testing"
	"time"
)

func TestCronAcceptsWhatFCAccepts(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		expr string
		ok   bool
		next time.Time // first run after start, when ok
	}{
		{"0 * * * * *", true, start.Add(time.Minute)},
		{"30 */5 * * * *", true, start.Add(30 * time.Second)},
		{"0 0 10 * * *", true, start.Add(10 * time.Hour)},
		{"CRON_TZ=Asia/Shanghai 0 0 10 * * *", true, start.Add(2 * time.Hour)},
		{"0 0 8-18 ? * MON-FRI", true, start.Add(8 * time.Hour)}, // 2030-01-01 is a Tuesday
		{"0 0,30 9 1 JAN *", true, start.Add(9 * time.Hour)},
		{"59 59 23 31 12 *", true, start.Add(365*24*time.Hour - time.Second)},
		{"@every 1m", true, start.Add(time.Minute)},
		{"@every 2h", true, start.Add(2 * time.Hour)},
		{"@every 1h30m", true, start.Add(90 * time.Minute)},
		{"CRON_TZ=Asia/Shanghai @every 5m", true, start.Add(5 * time.Minute)},
		// Seconds take a fixed value only.
		{"*/10 * * * * *", false, time.Time{}},
		{"*/30 * * * * *", false, time.Time{}},
		{"* * * * * *", false, time.Time{}},
		{"0,30 * * * * *", false, time.Time{}},
		{"0-5 * * * * *", false, time.Time{}},
		{"60 * * * * *", false, time.Time{}},
		// Intervals in whole minutes or hours.
		{"@every 10s", false, time.Time{}},
		{"@every 90s", false, time.Time{}},
		{"@every 0m", false, time.Time{}},
		{"@every 1.5h", false, time.Time{}},
		{"@every ", false, time.Time{}},
		{"@daily", false, time.Time{}},
		{"@hourly", false, time.Time{}},
		// Shape.
		{"0 10 * * *", false, time.Time{}},
		{"0 0 10 * * * 2030", false, time.Time{}},
		{"0 0 10 L * *", false, time.Time{}},
		{"0 0 10 * * 5#3", false, time.Time{}},
		{"0 61 * * * *", false, time.Time{}}, // characters fine, range refused by the parser
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			s, err := TimerTriggerConfig{CronExpression: tc.expr}.Schedule()
			if (err == nil) != tc.ok {
				t.Fatalf("Schedule(%q) err = %v, want ok=%v", tc.expr, err, tc.ok)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "cronExpression") {
					t.Fatalf("error does not name the field: %v", err)
				}
				return
			}
			if got := s.Next(start); !got.Equal(tc.next) {
				t.Fatalf("Schedule(%q).Next = %v, want %v", tc.expr, got.UTC(), tc.next)
			}
		})
	}
}
