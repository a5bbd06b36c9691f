/* Anchored consensus source search for association (host only, double precision).
 *
 * The compiled form of shotline.associate_search.best_sources: every pair of
 * candidates on two of the `near_sensors` sensors nearest the anchor, with the
 * anchor, fixes up to two sources on the plane z = source_up_m in closed form;
 * hypotheses are ranked by sensors explained within tolerance_s (one trigger per
 * sensor), then loudness, then the sum of squared residuals, first on the
 * `score_sensors` nearest sensors' candidates, then on every candidate for the
 * best `shortlist`.  No allocation: the caller passes the scratch buffers.
 */
#ifndef ASSOC_SEARCH_H
#define ASSOC_SEARCH_H

#include <stdint.h>

/* Scratch sizes for n candidates: hypotheses at most n * (n - 1). */
#define ASSOC_WORK_DOUBLES(n) (5 * (n) * ((n) > 0 ? (n) - 1 : 0) + 8 * (n) + 8)
#define ASSOC_WORK_INTS(n) (4 * (n) * ((n) > 0 ? (n) - 1 : 0) + 4 * (n) + 8)

/* p0_m[3]: anchor sensor; dt_s[n]: candidate time minus anchor time; pos_m[3n]:
 * candidate sensors (rows x, y, z); sensor[n]: integer sensor labels; level_db[n]
 * (NaN = unknown, counts as 0).  Writes up to n_best hypotheses, best first and
 * at least distinct_m apart, each explaining >= min_count sensors: out_p_m[3 *
 * n_best] (source, caller frame), out_t_s[n_best] (emission time relative to the
 * anchor), out_resid_s[n_best * n] (residual of every candidate).  Returns how
 * many were written. */
int assoc_best_sources(const double *p0_m, int n, const double *dt_s, const double *pos_m,
                       const int64_t *sensor, const double *level_db, double c_m_s,
                       double tolerance_s, double max_range_m, double source_up_m, int min_count,
                       int near_sensors, int score_sensors, int shortlist, int n_best,
                       double distinct_m, double *work, int *iwork, double *out_p_m, double *out_t_s,
                       double *out_resid_s);

#endif
