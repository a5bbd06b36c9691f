/* Anchored consensus source search for association; see search.h. */
#include "search.h"

#include <math.h>

/* Is hypothesis a ranked strictly before b: more sensors, then louder, then smaller SSE? */
static int better(const int *count, const double *loud, const double *sse, int a, int b)
{
    if (count[a] != count[b])
        return count[a] > count[b];
    if (loud[a] != loud[b])
        return loud[a] > loud[b];
    return sse[a] < sse[b];
}

/* Insert h into order[0..*len) (best first, stable: after its equals), keeping at most cap. */
static void insert_ranked(int *order, int *len, int cap, int h, const int *count, const double *loud,
                          const double *sse)
{
    int p = *len;
    while (p > 0 && better(count, loud, sse, h, order[p - 1]))
        p--;
    if (p >= cap)
        return;
    int end = *len < cap ? *len : cap - 1;
    for (int q = end; q > p; q--)
        order[q] = order[q - 1];
    order[p] = h;
    if (*len < cap)
        (*len)++;
}

/* Up to two sources on z = 0 from three arrivals (solver frame); returns how many are valid. */
static int solve_triple(const double S[3][3], const double T[3], double c, double *px, double *py,
                        double *pt)
{
    double tau[3], M[3][3], R[3][2];
    double scale = 1.0;
    for (int i = 0; i < 3; i++) {
        tau[i] = c * T[i];
        M[i][0] = 2.0 * S[i][0];
        M[i][1] = 2.0 * S[i][1];
        M[i][2] = -2.0 * tau[i];
        R[i][0] = S[i][0] * S[i][0] + S[i][1] * S[i][1] + S[i][2] * S[i][2] - tau[i] * tau[i];
        R[i][1] = 1.0;
        scale *= sqrt(M[i][0] * M[i][0] + M[i][1] * M[i][1] + M[i][2] * M[i][2]);
    }
    /* LU with partial pivoting, both right-hand sides at once. */
    double det = 1.0;
    for (int col = 0; col < 3; col++) {
        int piv = col;
        for (int r = col + 1; r < 3; r++)
            if (fabs(M[r][col]) > fabs(M[piv][col]))
                piv = r;
        if (piv != col) {
            det = -det;
            for (int k = 0; k < 3; k++) {
                double tmp = M[col][k];
                M[col][k] = M[piv][k];
                M[piv][k] = tmp;
            }
            for (int k = 0; k < 2; k++) {
                double tmp = R[col][k];
                R[col][k] = R[piv][k];
                R[piv][k] = tmp;
            }
        }
        det *= M[col][col];
        if (M[col][col] == 0.0)
            return 0;
        for (int r = col + 1; r < 3; r++) {
            double f = M[r][col] / M[col][col];
            for (int k = col; k < 3; k++)
                M[r][k] -= f * M[col][k];
            R[r][0] -= f * R[col][0];
            R[r][1] -= f * R[col][1];
        }
    }
    if (!(fabs(det) > 1e-10 * fmax(scale, 1e-300)))
        return 0;
    double u[3], v[3];
    for (int r = 2; r >= 0; r--) {
        double su = R[r][0], sv = R[r][1];
        for (int k = r + 1; k < 3; k++) {
            su -= M[r][k] * u[k];
            sv -= M[r][k] * v[k];
        }
        u[r] = su / M[r][r];
        v[r] = sv / M[r][r];
    }
    double a = (v[0] * v[0] + v[1] * v[1]) - v[2] * v[2];
    double b = 2.0 * ((u[0] * v[0] + u[1] * v[1]) - u[2] * v[2]) - 1.0;
    double cc = (u[0] * u[0] + u[1] * u[1]) - u[2] * u[2];
    double disc = b * b - 4.0 * a * cc;
    if (!(disc >= -1e-9 * (b * b + fabs(4.0 * a * cc))))
        return 0;
    double sq = sqrt(fmax(disc, 0.0));
    double q = -0.5 * (b + copysign(sq, b));
    double roots[2] = {fabs(a) > 1e-18 ? q / a : (double)NAN, cc / q};
    int found = 0;
    for (int w = 0; w < 2; w++) {
        double x = u[0] + v[0] * roots[w], y = u[1] + v[1] * roots[w], bb = u[2] + v[2] * roots[w];
        if (!(isfinite(x) && isfinite(y) && isfinite(bb)))
            continue;
        int causal = 1;
        for (int i = 0; i < 3; i++) {
            double dx = S[i][0] - x, dy = S[i][1] - y;
            double dist = sqrt(dx * dx + dy * dy + S[i][2] * S[i][2]);
            if (!(tau[i] - bb > -1e-6 * (1.0 + dist)))
                causal = 0;
        }
        if (causal) {
            px[found] = x;
            py[found] = y;
            pt[found] = bb / c;
            found++;
        }
    }
    return found;
}

/* Score hypotheses hs[0..nh) on the rows whose sensor ranks below `limit` by distance. */
static void score(int nh, const int *hs, const double *hx, const double *hy, const double *ht, int n,
                  const double *rel, const double *dt, const double *lvl, const int *group,
                  const int *rank, int n_groups, int limit, double c, double tol, double *best,
                  double *loudest, int *count, double *loud, double *sse)
{
    for (int a = 0; a < nh; a++) {
        int h = hs[a];
        for (int g = 0; g < n_groups; g++) {
            best[g] = INFINITY;
            loudest[g] = -INFINITY;
        }
        for (int j = 0; j < n; j++) {
            int g = group[j];
            if (rank[g] >= limit)
                continue;
            double dx = rel[3 * j] - hx[h], dy = rel[3 * j + 1] - hy[h], dz = rel[3 * j + 2];
            double r = fabs(dt[j] - ht[h] - sqrt(dx * dx + dy * dy + dz * dz) / c);
            if (r < best[g])
                best[g] = r;
            if (r <= tol && lvl[j] > loudest[g])
                loudest[g] = lvl[j];
        }
        int k = 0;
        double s = 0.0, l = 0.0;
        for (int g = 0; g < n_groups; g++) {
            if (best[g] <= tol) {
                k++;
                s += best[g] * best[g];
            }
            if (isfinite(loudest[g]))
                l += loudest[g];
        }
        count[h] = k;
        sse[h] = s;
        loud[h] = l;
    }
}

int assoc_best_sources(const double *p0_m, int n, const double *dt_s, const double *pos_m,
                       const int64_t *sensor, const double *level_db, double c_m_s,
                       double tolerance_s, double max_range_m, double source_up_m, int min_count,
                       int near_sensors, int score_sensors, int shortlist, int n_best,
                       double distinct_m, int work_rows, double *work, int *iwork, double *out_p_m,
                       double *out_t_s, double *out_resid_s)
{
    if (n < 2)
        return 0;
    double *rel = work, *lvl = rel + 3 * n, *gdist = lvl + n, *best = gdist + n, *loudest = best + n;
    int *group = iwork, *first = group + n, *rank = first + n, *byd = rank + n;

    /* Anchor above the origin; the source plane is z = 0. */
    double z0 = p0_m[2] - source_up_m;
    for (int j = 0; j < n; j++) {
        rel[3 * j] = pos_m[3 * j] - p0_m[0];
        rel[3 * j + 1] = pos_m[3 * j + 1] - p0_m[1];
        rel[3 * j + 2] = pos_m[3 * j + 2] - source_up_m;
        lvl[j] = isnan(level_db[j]) ? 0.0 : level_db[j];
    }
    /* Sensors in ascending label order (group id), ranked by distance of their first row. */
    int n_groups = 0;
    for (int j = 0; j < n; j++) {
        int g = 0;
        while (g < n_groups && sensor[first[g]] != sensor[j])
            g++;
        if (g == n_groups)
            first[n_groups++] = j;
    }
    for (int g = 1; g < n_groups; g++) {
        int f = first[g], p = g;
        while (p > 0 && sensor[first[p - 1]] > sensor[f]) {
            first[p] = first[p - 1];
            p--;
        }
        first[p] = f;
    }
    for (int g = 0; g < n_groups; g++) {
        int f = first[g];
        gdist[g] = hypot(rel[3 * f], rel[3 * f + 1]);
        int p = g;
        while (p > 0 && gdist[byd[p - 1]] > gdist[g]) {
            byd[p] = byd[p - 1];
            p--;
        }
        byd[p] = g;
    }
    for (int p = 0; p < n_groups; p++)
        rank[byd[p]] = p;
    for (int j = 0; j < n; j++) {
        int g = 0;
        while (sensor[first[g]] != sensor[j])
            g++;
        group[j] = g;
    }

    /* Hypotheses from the anchor and every pair of rows on two of the nearest sensors. */
    int m = 0;
    for (int j = 0; j < n; j++)
        m += rank[group[j]] < near_sensors;
    if (m > work_rows)
        return -1;
    int hmax = m * (m - 1);
    double *hx = loudest + n, *hy = hx + hmax, *ht = hy + hmax, *loud = ht + hmax, *sse = loud + hmax;
    int *count = byd + n, *order = count + hmax;
    int nh = 0;
    for (int a = 0; a < n; a++) {
        if (rank[group[a]] >= near_sensors)
            continue;
        for (int b = a + 1; b < n; b++) {
            if (rank[group[b]] >= near_sensors || group[b] == group[a])
                continue;
            const double *pa = rel + 3 * a, *pb = rel + 3 * b;
            double cx = (0.0 + pa[0] + pb[0]) / 3.0, cy = (0.0 + pa[1] + pb[1]) / 3.0;
            double S[3][3] = {{-cx, -cy, z0}, {pa[0] - cx, pa[1] - cy, pa[2]},
                              {pb[0] - cx, pb[1] - cy, pb[2]}};
            double T[3] = {0.0, dt_s[a], dt_s[b]};
            double px[2], py[2], pt[2];
            int found = solve_triple(S, T, c_m_s, px, py, pt);
            for (int w = 0; w < found; w++) {
                double x = px[w] + cx, y = py[w] + cy;
                if (hypot(x, y) <= max_range_m) {
                    hx[nh] = x;
                    hy[nh] = y;
                    ht[nh] = pt[w];
                    nh++;
                }
            }
        }
    }
    if (nh == 0)
        return 0;

    /* First pass on the nearest sensors' rows, then every row for the shortlist. */
    for (int h = 0; h < nh; h++)
        order[h] = h;
    score(nh, order, hx, hy, ht, n, rel, dt_s, lvl, group, rank, n_groups, score_sensors, c_m_s,
          tolerance_s, best, loudest, count, loud, sse);
    int *short_list = order + hmax, *picked = short_list + hmax, n_short = 0;
    if (shortlist > nh)
        shortlist = nh;
    for (int h = 0; h < nh; h++)
        insert_ranked(short_list, &n_short, shortlist, h, count, loud, sse);
    score(n_short, short_list, hx, hy, ht, n, rel, dt_s, lvl, group, rank, n_groups, n_groups,
          c_m_s, tolerance_s, best, loudest, count, loud, sse);
    int n_ranked = 0;
    for (int a = 0; a < n_short; a++)
        insert_ranked(order, &n_ranked, n_short, short_list[a], count, loud, sse);

    int chosen = 0;
    for (int a = 0; a < n_ranked && chosen < n_best; a++) {
        int h = order[a];
        if (count[h] < min_count)
            break;
        int distinct = 1;
        for (int g = 0; g < chosen && distinct; g++)
            distinct = hypot(hx[h] - hx[picked[g]], hy[h] - hy[picked[g]]) > distinct_m;
        if (!distinct)
            continue;
        picked[chosen] = h;
        out_p_m[3 * chosen] = hx[h] + p0_m[0];
        out_p_m[3 * chosen + 1] = hy[h] + p0_m[1];
        out_p_m[3 * chosen + 2] = source_up_m;
        out_t_s[chosen] = ht[h];
        for (int j = 0; j < n; j++) {
            double dx = rel[3 * j] - hx[h], dy = rel[3 * j + 1] - hy[h], dz = rel[3 * j + 2];
            out_resid_s[chosen * n + j] = dt_s[j] - ht[h] - sqrt(dx * dx + dy * dy + dz * dz) / c_m_s;
        }
        chosen++;
    }
    return chosen;
}

/* Is a trigger at t_s on a sensor last in an event at heard_s an echo suspect (see search.h)? */
static int after_event(double t_s, double heard_s, double level_db, double reverb_s)
{
    double dt = t_s - heard_s;
    return dt > 0.0 && dt <= reverb_s && !isfinite(level_db);
}

int assoc_window(int used, const double *t_s, const double *tmax_s, const int8_t *state,
                 const int64_t *sensor, const double *level_db, const double *heard_s, int i,
                 int n_hood, const int64_t *hood, const double *hood_m, double c_m_s,
                 double tolerance_s, double max_range_m, double reverb_s, double *reach_s,
                 uint8_t *flag, int64_t *window, int64_t *others, int *counts)
{
    double t0 = t_s[i];
    int64_t k0 = sensor[i];
    double span = max_range_m / c_m_s + tolerance_s;
    /* First slot whose running maximum reaches t0 - span: every earlier trigger is older. */
    double from = t0 - span;
    int lo = 0, hi = used;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (tmax_s[mid] < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Per neighbour sensor, the largest |t_j - t0| a trigger there may have (no
     * division in the scan); other sensors stay at -INFINITY: out of reach. */
    for (int h = 0; h < n_hood; h++)
        reach_s[hood[h]] = fmin(hood_m[h], max_range_m) / c_m_s + tolerance_s;
    int nw = 0, no = 0, n_sensors = 0, n_fresh = 0, n_maskable = 0;
    for (int j = lo; j < used; j++) {
        int64_t k = sensor[j];
        if (!(fabs(t_s[j] - t0) <= reach_s[k]) || state[j] == ASSOC_IN_EVENT)
            continue;
        window[nw++] = j;
        int joinable = state[j] == ASSOC_PENDING || state[j] == ASSOC_DEFERRED || state[j] == ASSOC_MASKED;
        if (k == k0 || !joinable)
            continue;
        others[no++] = j;
        if (!flag[k]) {
            flag[k] = 1;
            n_sensors++;
        }
        if (isfinite(level_db[j]) || state[j] == ASSOC_MASKED)
            n_maskable++;
        if (state[j] == ASSOC_PENDING && !after_event(t_s[j], heard_s[k], level_db[j], reverb_s))
            n_fresh++;
    }
    for (int h = 0; h < n_hood; h++)
        reach_s[hood[h]] = -INFINITY;
    for (int o = 0; o < no; o++)
        flag[sensor[others[o]]] = 0;
    counts[0] = no;
    counts[1] = n_sensors;
    counts[2] = n_fresh;
    counts[3] = n_maskable;
    counts[4] = after_event(t0, heard_s[k0], level_db[i], reverb_s);
    return nw;
}

int assoc_heard_in_order(const double *source_m, int n_members, const int64_t *members,
                         const int64_t *sensor, double reach_m, int n_near, const int64_t *near,
                         const double *sensor_xyz, double nearest_fraction, int min_sensors,
                         double *work_d, int64_t *work_i, uint8_t *flag, int64_t *rank_of,
                         int64_t *kept)
{
    double *dist = work_d;          /* the sensors within reach, nearest first (stable) */
    int64_t *ranked = work_i;
    int64_t *before = work_i + n_near; /* how many of the nearer ones took part */
    int m = 0;
    for (int h = 0; h < n_near; h++) {
        const double *x = sensor_xyz + 3 * near[h];
        double dx = x[0] - source_m[0], dy = x[1] - source_m[1], dz = x[2] - source_m[2];
        double d = sqrt(dx * dx + dy * dy + dz * dz);
        if (!(d <= reach_m))
            continue;
        int q = m++;
        while (q > 0 && dist[q - 1] > d) {
            dist[q] = dist[q - 1];
            ranked[q] = ranked[q - 1];
            q--;
        }
        dist[q] = d;
        ranked[q] = near[h];
    }
    for (int k = 0; k < n_members; k++)
        flag[sensor[members[k]]] = 1;
    int64_t took = 0;
    for (int h = 0; h < m; h++) {
        before[h] = took;
        took += flag[ranked[h]];
    }
    for (int k = 0; k < n_members; k++)
        flag[sensor[members[k]]] = 0;
    int n_check = min_sensors < m ? min_sensors : m;
    int64_t took_first = n_check < m ? before[n_check] : took;
    if ((double)took_first < ceil(nearest_fraction * (double)n_check))
        return -1;
    for (int h = 0; h < m; h++)
        rank_of[ranked[h]] = h;
    int n_kept = 0;
    for (int k = 0; k < n_members; k++) {
        int64_t rank = rank_of[sensor[members[k]]]; /* 0 for a sensor not among them */
        double share = m > 0 ? (double)before[rank] : 0.0;
        if (rank < n_check || share >= nearest_fraction * (double)rank)
            kept[n_kept++] = members[k];
    }
    for (int h = 0; h < m; h++)
        rank_of[ranked[h]] = 0;
    return n_kept;
}

int assoc_one_per_sensor(int n, const int64_t *idx, const double *abs_resid_s, double limit_s,
                         const int64_t *sensor, const double *level_db, int64_t *best, int64_t *out)
{
    int m = 0; /* out[] holds the candidates' positions in idx[] while choosing */
    for (int q = 0; q < n; q++) {
        if (!(abs_resid_s[q] <= limit_s))
            continue;
        int64_t k = sensor[idx[q]];
        int64_t b = best[k];
        if (b < 0) {
            best[k] = q;
            out[m++] = q;
            continue;
        }
        double lq = isnan(level_db[idx[q]]) ? 0.0 : level_db[idx[q]];
        double lb = isnan(level_db[idx[b]]) ? 0.0 : level_db[idx[b]];
        if (lq > lb || (lq == lb && abs_resid_s[q] < abs_resid_s[b]))
            best[k] = q;
    }
    for (int r = 0; r < m; r++) { /* the winners, by sensor (insertion sort) */
        int64_t k = sensor[idx[out[r]]];
        int64_t q = best[k];
        best[k] = -1;
        int p = r;
        while (p > 0 && sensor[out[p - 1]] > k) {
            out[p] = out[p - 1];
            p--;
        }
        out[p] = idx[q];
    }
    return m;
}
