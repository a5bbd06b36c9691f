/* Least-squares fix of one impulse from one arrival per sensor (host only, double precision).
 *
 * The compiled form of what shotline.locate.locate does for a set whose arrivals
 * are all consistent: the linear least-squares start, then Levenberg-Marquardt on
 * the source position (plane z = 0 of the solver frame) and emission time, with the
 * same damping, scaling and stopping rules.  No allocation, no static state.
 */
#ifndef ASSOC_FIT_H
#define ASSOC_FIT_H

/* s_m[3n]: sensors in the solver frame (centred, source plane z = 0); dt_s[n]:
 * arrival times relative to a reference; c_m_s: speed of sound.  Writes the
 * source out_p_m[2] (x, y; z = 0), the emission time *out_t0_s (same reference),
 * out_resid_s[n] (arrival minus model), out_inv[9] = (J^T J)^-1 at the fix (J:
 * d residual / d (x, y, t0), row-major) and *out_gdop (position and range bias,
 * in range units).  Returns 0, or -1 when n < 4, the linear start is not finite,
 * the sensors' horizontal spread has rank < 2 (relative tolerance 1e-6) or
 * J^T J is ill-conditioned (Frobenius condition number above 1e10). */
int assoc_fit(int n, const double *s_m, const double *dt_s, double c_m_s, double *out_p_m,
              double *out_t0_s, double *out_resid_s, double *out_inv, double *out_gdop);

#endif
