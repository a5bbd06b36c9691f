/* Least-squares fix of one impulse; see fit.h. */
#include "fit.h"

#include <math.h>

/* Solve the symmetric n x n system A x = b in place (n <= 4, partial pivoting); -1 if singular. */
static int solve_small(int n, double A[4][4], double b[4], double x[4])
{
    for (int col = 0; col < n; col++) {
        int piv = col;
        for (int r = col + 1; r < n; r++)
            if (fabs(A[r][col]) > fabs(A[piv][col]))
                piv = r;
        if (A[piv][col] == 0.0)
            return -1;
        if (piv != col) {
            for (int k = 0; k < n; k++) {
                double tmp = A[col][k];
                A[col][k] = A[piv][k];
                A[piv][k] = tmp;
            }
            double tmp = b[col];
            b[col] = b[piv];
            b[piv] = tmp;
        }
        for (int r = col + 1; r < n; r++) {
            double f = A[r][col] / A[col][col];
            for (int k = col; k < n; k++)
                A[r][k] -= f * A[col][k];
            b[r] -= f * b[col];
        }
    }
    for (int r = n - 1; r >= 0; r--) {
        double s = b[r];
        for (int k = r + 1; k < n; k++)
            s -= A[r][k] * x[k];
        x[r] = s / A[r][r];
    }
    return 0;
}

/* Residuals (arrival - model) at (x, y, t0); returns their sum of squares. */
static double residuals(int n, const double *s, const double *dt, double c, double x, double y,
                        double t0, double *r)
{
    double cost = 0.0;
    for (int i = 0; i < n; i++) {
        double dx = s[3 * i] - x, dy = s[3 * i + 1] - y, dz = s[3 * i + 2];
        r[i] = dt[i] - t0 - sqrt(dx * dx + dy * dy + dz * dz) / c;
        cost += r[i] * r[i];
    }
    return cost;
}

/* J^T J at (x, y) for the residuals' derivatives d r / d (x, y, t0). */
static void normal_matrix(int n, const double *s, double c, double x, double y, const double *r,
                          double JtJ[4][4], double Jtr[4])
{
    for (int j = 0; j < 3; j++) {
        Jtr[j] = 0.0;
        for (int k = 0; k < 3; k++)
            JtJ[j][k] = 0.0;
    }
    for (int i = 0; i < n; i++) {
        double dx = s[3 * i] - x, dy = s[3 * i + 1] - y, dz = s[3 * i + 2];
        double dist = fmax(sqrt(dx * dx + dy * dy + dz * dz), 1e-9);
        double J[3] = {dx / (dist * c), dy / (dist * c), -1.0};
        for (int j = 0; j < 3; j++) {
            Jtr[j] += J[j] * r[i];
            for (int k = 0; k < 3; k++)
                JtJ[j][k] += J[j] * J[k];
        }
    }
}

/* Inverse of a symmetric 3 x 3 matrix by cofactors; -1 if the Frobenius condition number > 1e10. */
static int inverse3(double A[4][4], double *inv)
{
    double c00 = A[1][1] * A[2][2] - A[1][2] * A[2][1], c01 = A[1][2] * A[2][0] - A[1][0] * A[2][2],
           c02 = A[1][0] * A[2][1] - A[1][1] * A[2][0];
    double det = A[0][0] * c00 + A[0][1] * c01 + A[0][2] * c02;
    if (!(det != 0.0) || !isfinite(det))
        return -1;
    double adj[9] = {c00, A[0][2] * A[2][1] - A[0][1] * A[2][2], A[0][1] * A[1][2] - A[0][2] * A[1][1],
                     c01, A[0][0] * A[2][2] - A[0][2] * A[2][0], A[0][2] * A[1][0] - A[0][0] * A[1][2],
                     c02, A[0][1] * A[2][0] - A[0][0] * A[2][1], A[0][0] * A[1][1] - A[0][1] * A[1][0]};
    double norm_a = 0.0, norm_inv = 0.0;
    for (int j = 0; j < 3; j++)
        for (int k = 0; k < 3; k++)
            norm_a += A[j][k] * A[j][k];
    for (int j = 0; j < 9; j++) {
        inv[j] = adj[j] / det;
        norm_inv += inv[j] * inv[j];
    }
    return sqrt(norm_a * norm_inv) <= 1e10 ? 0 : -1;
}

int assoc_fit(int n, const double *s_m, const double *dt_s, double c_m_s, double *out_p_m,
              double *out_t0_s, double *out_resid_s, double *out_inv, double *out_gdop)
{
    if (n < 4)
        return -1;
    /* Horizontal spread: the 2 x 2 scatter matrix of the sensors about their mean. */
    double mx = 0.0, my = 0.0;
    for (int i = 0; i < n; i++) {
        mx += s_m[3 * i];
        my += s_m[3 * i + 1];
    }
    mx /= n;
    my /= n;
    double sxx = 0.0, sxy = 0.0, syy = 0.0;
    for (int i = 0; i < n; i++) {
        double ex = s_m[3 * i] - mx, ey = s_m[3 * i + 1] - my;
        sxx += ex * ex;
        sxy += ex * ey;
        syy += ey * ey;
    }
    double half = 0.5 * (sxx + syy), root = sqrt(0.25 * (sxx - syy) * (sxx - syy) + sxy * sxy);
    double big = half + root, small = half - root;     /* eigenvalues: singular values squared */
    if (!(big > 0.0) || !(small > 1e-12 * big))
        return -1;

    /* Linear start: 2 p.s - 2 tau w' - b = |s|^2 - tau^2 with columns scaled, tiny ridge. */
    double AtA[4][4] = {{0.0}}, Aty[4] = {0.0};
    for (int i = 0; i < n; i++) {
        double tau = c_m_s * dt_s[i];
        const double *p = s_m + 3 * i;
        double a[4] = {2.0 * p[0], 2.0 * p[1], -2.0 * tau, -1.0};
        double y = p[0] * p[0] + p[1] * p[1] + p[2] * p[2] - tau * tau;
        for (int j = 0; j < 4; j++) {
            Aty[j] += a[j] * y;
            for (int k = 0; k < 4; k++)
                AtA[j][k] += a[j] * a[k];
        }
    }
    double d[4], b[4], x[4];
    for (int j = 0; j < 4; j++)
        d[j] = sqrt(fmax(AtA[j][j], 1e-300));
    for (int j = 0; j < 4; j++) {
        for (int k = 0; k < 4; k++)
            AtA[j][k] = AtA[j][k] / d[j] / d[k] + (j == k ? 1e-12 : 0.0);
        b[j] = Aty[j] / d[j];
    }
    if (solve_small(4, AtA, b, x) != 0)
        return -1;
    double px = x[0] / d[0], py = x[1] / d[1], t0 = x[2] / d[2] / c_m_s;
    if (!(isfinite(px) && isfinite(py) && isfinite(t0)))
        return -1;

    /* Levenberg-Marquardt with the columns scaled by the diagonal of J^T J. */
    double lam = 1e-3;
    double cost = residuals(n, s_m, dt_s, c_m_s, px, py, t0, out_resid_s);
    for (int it = 0; it < 30; it++) {
        double JtJ[4][4], Jtr[4];
        normal_matrix(n, s_m, c_m_s, px, py, out_resid_s, JtJ, Jtr);
        double dd[3], step[4];
        for (int j = 0; j < 3; j++)
            dd[j] = sqrt(fmax(JtJ[j][j], 1e-300));
        for (int j = 0; j < 3; j++) {
            for (int k = 0; k < 3; k++)
                JtJ[j][k] = JtJ[j][k] / dd[j] / dd[k] + (j == k ? lam : 0.0);
            b[j] = Jtr[j] / dd[j];
        }
        if (solve_small(3, JtJ, b, step) != 0)
            return -1;
        for (int j = 0; j < 3; j++)
            step[j] = -step[j] / dd[j];
        double nx = px + step[0], ny = py + step[1], nt = t0 + step[2];
        double new_cost = 0.0;
        for (int i = 0; i < n; i++) {
            double dx = s_m[3 * i] - nx, dy = s_m[3 * i + 1] - ny, dz = s_m[3 * i + 2];
            double r = dt_s[i] - nt - sqrt(dx * dx + dy * dy + dz * dz) / c_m_s;
            new_cost += r * r;
        }
        int better = isfinite(new_cost) && new_cost <= cost;
        if (better) {
            px = nx;
            py = ny;
            t0 = nt;
            cost = residuals(n, s_m, dt_s, c_m_s, px, py, t0, out_resid_s);
            lam = fmax(lam / 5.0, 1e-12);
        } else {
            lam *= 10.0;
        }
        int small_step = fmax(fabs(step[0]), fabs(step[1])) < 1e-6;
        if ((better && small_step) || lam > 1e8)
            break;
    }
    out_p_m[0] = px;
    out_p_m[1] = py;
    *out_t0_s = t0;
    /* Uncertainty at the fix; GDOP from H = [c J_xy, 1], whose (H^T H)^-1 is (J^T J)^-1 rescaled. */
    double JtJ[4][4], Jtr[4];
    normal_matrix(n, s_m, c_m_s, px, py, out_resid_s, JtJ, Jtr);
    if (inverse3(JtJ, out_inv) != 0)
        return -1;
    *out_gdop = sqrt((out_inv[0] + out_inv[4]) / (c_m_s * c_m_s) + out_inv[8]);
    return 0;
}
