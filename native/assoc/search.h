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

/* Scratch sizes for n candidates, m of them on the near_sensors nearest sensors (an upper
 * bound will do): hypotheses at most m * (m - 1). */
#define ASSOC_WORK_DOUBLES(n, m) (5 * (m) * ((m) > 0 ? (m) - 1 : 0) + 8 * (n) + 8)
#define ASSOC_WORK_INTS(n, m) (4 * (m) * ((m) > 0 ? (m) - 1 : 0) + 4 * (n) + 8)

/* p0_m[3]: anchor sensor; dt_s[n]: candidate time minus anchor time; pos_m[3n]:
 * candidate sensors (rows x, y, z); sensor[n]: integer sensor labels; level_db[n]
 * (NaN = unknown, counts as 0).  Writes up to n_best hypotheses, best first and
 * at least distinct_m apart, each explaining >= min_count sensors: out_p_m[3 *
 * n_best] (source, caller frame), out_t_s[n_best] (emission time relative to the
 * anchor), out_resid_s[n_best * n] (residual of every candidate).  work and iwork
 * hold ASSOC_WORK_DOUBLES(n, work_rows) and ASSOC_WORK_INTS(n, work_rows).  Returns how
 * many were written, or -1 (nothing done) when more than work_rows candidates are on
 * the near_sensors nearest sensors. */
int assoc_best_sources(const double *p0_m, int n, const double *dt_s, const double *pos_m,
                       const int64_t *sensor, const double *level_db, double c_m_s,
                       double tolerance_s, double max_range_m, double source_up_m, int min_count,
                       int near_sensors, int score_sensors, int shortlist, int n_best,
                       double distinct_m, int work_rows, double *work, int *iwork, double *out_p_m,
                       double *out_t_s, double *out_resid_s);

/* Trigger states (as shotline.associate's): a pending, deferred or masked trigger may join an event. */
#define ASSOC_PENDING 0
#define ASSOC_IN_EVENT 1
#define ASSOC_UNEXPLAINED 2
#define ASSOC_DEFERRED 3
#define ASSOC_MASKED 4

/* The window of anchor slot i in the associator's trigger buffer (`used` slots): the
 * slots j not in an event with |t_j - t_i| <= min(d, max_range_m) / c_m_s + tolerance_s,
 * d the distance from the anchor's sensor to sensor[j] (hood[n_hood], hood_m[n_hood]:
 * the anchor sensor's neighbourhood; other sensors are out of reach), written to
 * window[] in slot order; tmax_s[] is the running maximum of t_s[].  Of those, the
 * ones on other sensors that may join an event (pending, deferred, masked) go to
 * others[].  counts[0] = how many others, counts[1] = on how many sensors,
 * counts[2] = how many others are pending and not within reverb_s after their
 * sensor's latest event (heard_s[sensor]; a trigger with a level never is),
 * counts[3] = how many others have a level or are masked, counts[4] = 1 if the
 * anchor itself comes within reverb_s after its sensor's latest event and has no
 * level.  reach_s[] (per sensor, all -INFINITY) and flag[] (per sensor, all 0) are
 * scratch, left as found.  Returns how many slots are in the window. */
int assoc_window(int used, const double *t_s, const double *tmax_s, const int8_t *state,
                 const int64_t *sensor, const double *level_db, const double *heard_s, int i,
                 int n_hood, const int64_t *hood, const double *hood_m, double c_m_s,
                 double tolerance_s, double max_range_m, double reverb_s, double *reach_s,
                 uint8_t *flag, int64_t *window, int64_t *others, int *counts);

/* Which members (buffer slots) a real source at source_m could have: the sensors
 * near[n_near] (a superset of those within reach_m of it; rows of sensor_xyz) within
 * reach_m, ranked by distance, must include nearest_fraction of the min_sensors
 * nearest, else the set is refused (-1); a member is dropped when fewer than that
 * share of the sensors nearer than it took part.  sensor[slot] is the buffer's
 * trigger sensors.  Writes the kept members to
 * kept[] in their order and returns how many.  work_d[n_near], work_i[2 * n_near]
 * are scratch; flag[] (all 0) and rank_of[] (all 0), per sensor, are left as found. */
int assoc_heard_in_order(const double *source_m, int n_members, const int64_t *members,
                         const int64_t *sensor, double reach_m, int n_near, const int64_t *near,
                         const double *sensor_xyz, double nearest_fraction, int min_sensors,
                         double *work_d, int64_t *work_i, uint8_t *flag, int64_t *rank_of,
                         int64_t *kept);

/* From idx[n] (buffer slots), one per sensor among those with abs_resid_s <= limit_s:
 * the loudest (level_db[slot], NaN counts as 0), then the best fit, then the first.
 * Writes them to out[] by sensor (ascending) and returns how many.  best[] (per
 * sensor, all -1) is scratch, left as found. */
int assoc_one_per_sensor(int n, const int64_t *idx, const double *abs_resid_s, double limit_s,
                         const int64_t *sensor, const double *level_db, int64_t *best, int64_t *out);

#endif
