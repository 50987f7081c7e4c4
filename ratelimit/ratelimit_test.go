package ratelimit_test

import (
	"errors"
	"math"
	"testing"

	"github.com/gatehouse-bff/gatehouse/ratelimit"
)

func TestLimitValidate(t *testing.T) {
	for _, l := range []ratelimit.Limit{
		{Rate: 1e6, Burst: 1}, {Rate: 1e-6, Burst: 1}, {Rate: 1e6, Burst: 1 << 30}, {Rate: 1, Burst: 315_360_000},
	} {
		if err := l.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v; want nil", l, err)
		}
	}
	for _, l := range []ratelimit.Limit{
		{Rate: 0, Burst: 1}, {Rate: -1, Burst: 1}, {Rate: math.NaN(), Burst: 1}, {Rate: math.Inf(1), Burst: 1},
		{Rate: 1, Burst: 0}, {Rate: 1, Burst: -5}, {Rate: 2e6, Burst: 1}, {Rate: 1e-9, Burst: 1},
		{Rate: 1, Burst: 315_360_001}, // refills from empty in just over ten years
	} {
		if err := l.Validate(); !errors.Is(err, ratelimit.ErrInvalidLimit) {
			t.Errorf("Validate(%+v) = %v; want ErrInvalidLimit", l, err)
		}
	}
}
