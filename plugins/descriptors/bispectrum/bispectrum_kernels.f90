! Bispectrum fingerprints (Bartok et al., Phys. Rev. Lett. 104, 136403 (2010)) in the
! conventions of Amp, with analytic derivatives (in the manner of Thompson et al.,
! J. Comput. Phys. 285, 316 (2015)). The same arithmetic as the numpy kernel
! amp_plugins/descriptors/bispectrum/_kernel.py, which documents the formulas:
!
!   c_i = sum_k w_k fc(r_k) U(r_k)                      (U vector of Wigner matrices)
!   B_f = Re sum_t coef_t conj(c[j_t]) c[1_t] c[2_t]    (terms of the coupling table)
!   d B_f / d r_k = Re sum_e d(w_k fc U_k)[e] / d r_k * Y_f[e],  Y_f = d B_f / d c
!
! Called through ctypes from _fortran.py. Every routine is bind(C). Arrays are C-ordered
! on the Python side, so a Python (n, m) array is an (m, n) array here. Indices that come
! in are 0-based and are checked before use; bad input returns an error code (err_*) and
! the offending 0-based index in bad_index.
module amp_bispectrum_kernels
  use, intrinsic :: iso_c_binding, only: c_int64_t, c_double
  implicit none
  private
  public :: amp_bispectrum_abi_version, amp_bispectrum_fingerprints

  integer, parameter :: dp = c_double, ik = c_int64_t
  real(dp), parameter :: pi = 3.14159265358979323846264338327950288_dp
  integer(ik), parameter :: abi_version = 1

  integer(ik), parameter :: err_shape = 1      ! a size argument is negative or inconsistent
  integer(ik), parameter :: err_offsets = 3    ! neighbour offsets are not 0 .. n_entries, ascending
  integer(ik), parameter :: err_term = 5       ! a coupling-table index is out of range
  integer(ik), parameter :: err_cutoff = 6     ! unknown cutoff kind or Rc <= 0
  integer(ik), parameter :: err_slot = 7       ! a derivative block index is out of range
  integer(ik), parameter :: err_overlap = 8    ! a neighbour at zero distance
  integer(ik), parameter :: err_memory = 9     ! scratch memory could not be allocated

  integer(ik), parameter :: cut_cosine = 1, cut_polynomial = 2

contains

  integer(ik) function amp_bispectrum_abi_version() bind(C, name="amp_bispectrum_abi_version")
    amp_bispectrum_abi_version = abi_version
  end function amp_bispectrum_abi_version

  ! Values (nf, n_atoms) and, with deriv /= 0, derivative blocks (nf, 3, n_pairs) of one structure.
  integer(ik) function amp_bispectrum_fingerprints(n_atoms, n_entries, starts, vectors, weights, &
      cut_kind, rc, gam, two_jmax, usize, nf, n_terms, term_starts, term_j, term_1, term_2, coef, &
      deriv, n_pairs, slots, own, values, derivatives, bad_index) result(status) &
      bind(C, name="amp_bispectrum_fingerprints")
    integer(ik), value :: n_atoms, n_entries, cut_kind, two_jmax, usize, nf, n_terms, deriv, n_pairs
    real(dp), value :: rc, gam
    integer(ik), intent(in) :: starts(n_atoms + 1), term_starts(nf + 1)
    integer(ik), intent(in) :: term_j(n_terms), term_1(n_terms), term_2(n_terms)
    integer(ik), intent(in) :: slots(n_entries), own(n_atoms)
    real(dp), intent(in) :: vectors(3, n_entries), weights(n_entries), coef(n_terms)
    real(dp), intent(out) :: values(nf, n_atoms), derivatives(nf, 3, n_pairs)
    integer(ik), intent(out) :: bad_index
    integer, allocatable :: off(:)
    integer, allocatable :: members(:, :), n_members(:), fblock(:, :), nhalf(:)
    real(dp), allocatable :: sq(:), yc(:, :), acc(:, :), step(:, :)
    complex(dp), allocatable :: c(:), u(:), du(:, :), y(:, :), dw(:, :, :)
    integer :: i, k, l, e, f, t, ne, ne_max, nd, stat, tj, us, first, big, m, n, mm, local, partner
    real(dp) :: dr(3), di(3), sgn
    complex(dp) :: yv
    integer :: jt, it1, it2
    real(dp) :: x(3), r, fc, dfc, w, total
    complex(dp) :: a, b, da(3), db(3), cc

    status = 0
    bad_index = -1
    if (n_atoms < 0 .or. n_entries < 0 .or. two_jmax < 0 .or. nf < 0 .or. n_terms < 0 .or. n_pairs < 0) then
      status = err_shape
      return
    end if
    tj = int(two_jmax)
    us = int(usize)
    if (usize /= sum([((k + 1)**2, k = 0, tj)])) then
      status = err_shape
      return
    end if
    if (cut_kind /= cut_cosine .and. cut_kind /= cut_polynomial) status = err_cutoff
    if (.not. rc > 0.0_dp) status = err_cutoff
    if (status /= 0) return
    status = check_offsets(n_atoms, n_entries, starts, bad_index)
    if (status /= 0) return
    if (term_starts(1) /= 0 .or. term_starts(nf + 1) /= n_terms) then
      status = err_term
      return
    end if
    do f = 1, int(nf)
      if (term_starts(f + 1) < term_starts(f)) then
        status = err_term
        bad_index = f - 1
        return
      end if
    end do
    do t = 1, int(n_terms)
      if (min(term_j(t), term_1(t), term_2(t)) < 0 .or. max(term_j(t), term_1(t), term_2(t)) >= usize) then
        status = err_term
        bad_index = t - 1
        return
      end if
    end do
    if (deriv /= 0) then
      do e = 1, int(n_entries)
        if (slots(e) < 0 .or. slots(e) >= n_pairs) then
          status = err_slot
          bad_index = e - 1
          return
        end if
      end do
      do i = 1, int(n_atoms)
        if (own(i) < 0 .or. own(i) >= n_pairs) then
          status = err_slot
          bad_index = i - 1
          return
        end if
      end do
    end if

    ne_max = 0
    do i = 1, int(n_atoms)
      ne_max = max(ne_max, int(starts(i + 1) - starts(i)))
    end do
    nd = 1  ! derivative scratch: one row per neighbour entry of the largest centre
    if (deriv /= 0) nd = max(ne_max, 1)
    allocate (off(0:tj + 1), sq(0:tj + 1), c(us), u(us), du(us, 3), y(us, max(nf, 1_ik)), &
              dw(us, 3, nd), step(max(nf, 1_ik), 3), fblock(2, max(nf, 1_ik)), &
              members(max(nf, 1_ik), 0:tj), n_members(0:tj), nhalf(0:tj), stat=stat)
    if (stat == 0) allocate (yc(max(nf, 1_ik), 2 * us), acc(max(nf, 1_ik), 3), stat=stat)
    if (stat /= 0) then
      status = err_memory
      return
    end if
    off(0) = 0
    do k = 0, tj
      off(k + 1) = off(k) + (k + 1)**2
      sq(k) = sqrt(real(k, dp))
    end do
    sq(tj + 1) = sqrt(real(tj + 1, dp))
    ! U^J[J-p, J-q] = (-1)^(p-q) conj(U^J[p, q]) (also for c and its derivatives): the first
    ! nhalf(J) entries of block J (rows p < J/2, and for even J the middle row up to q = J/2)
    ! are one of each pair, and the contraction below runs over them only
    do big = 0, tj
      if (mod(big, 2) == 1) then
        nhalf(big) = (big + 1)**2 / 2
      else
        nhalf(big) = big * (big + 1) / 2 + big / 2 + 1
      end if
    end do
    ! Y_f is zero outside the blocks of j and j1 of feature f: per block, the features that
    ! reach it (members), so the contraction below touches only those
    n_members = 0
    do f = 1, int(nf)
      fblock(:, f) = -1
      if (term_starts(f + 1) == term_starts(f)) cycle
      first = int(term_starts(f)) + 1
      fblock(1, f) = block_of(int(term_j(first)), tj, off)
      fblock(2, f) = block_of(int(term_1(first)), tj, off)
      if (fblock(2, f) == fblock(1, f)) fblock(2, f) = -1
      do t = 1, 2
        big = fblock(t, f)
        if (big < 0) cycle
        n_members(big) = n_members(big) + 1
        members(n_members(big), big) = f
      end do
    end do

    values = 0.0_dp
    if (deriv /= 0) derivatives = 0.0_dp
    do i = 1, int(n_atoms)
      ne = int(starts(i + 1) - starts(i))
      c = (0.0_dp, 0.0_dp)
      do k = 1, ne
        e = int(starts(i)) + k
        x = vectors(:, e)
        r = sqrt(x(1) * x(1) + x(2) * x(2) + x(3) * x(3))
        if (r < 1e-12_dp) then
          status = err_overlap
          bad_index = e - 1
          return
        end if
        if (r >= rc) then
          if (deriv /= 0) dw(:, :, k) = (0.0_dp, 0.0_dp)
          cycle
        end if
        call cutoff(cut_kind, rc, gam, r, fc, dfc)
        call cayley_klein(x, r, rc, deriv /= 0, a, b, da, db)
        call wigner(tj, off, sq, a, b, da, db, deriv /= 0, u, du)
        w = weights(e)
        c = c + (w * fc) * u
        if (deriv /= 0) then  ! d (w fc U) / d r
          do l = 1, 3
            dw(:, l, k) = (w * fc) * du(:, l) + (w * dfc * x(l) / r) * u
          end do
        end if
      end do

      do f = 1, int(nf)
        total = 0.0_dp
        do t = int(term_starts(f)) + 1, int(term_starts(f + 1))
          total = total + coef(t) * real(conjg(c(term_j(t) + 1)) * c(term_1(t) + 1) * c(term_2(t) + 1), dp)
        end do
        values(f, i) = total
      end do
      if (deriv == 0 .or. ne == 0) cycle

      ! the adjoint Y_f = d B_f / d c
      y = (0.0_dp, 0.0_dp)
      do f = 1, int(nf)
        do t = int(term_starts(f)) + 1, int(term_starts(f + 1))
          jt = int(term_j(t)) + 1
          it1 = int(term_1(t)) + 1
          it2 = int(term_2(t)) + 1
          cc = coef(t) * conjg(c(jt))
          y(jt, f) = y(jt, f) + coef(t) * conjg(c(it1) * c(it2))
          y(it1, f) = y(it1, f) + cc * c(it2)
          y(it2, f) = y(it2, f) + cc * c(it1)
        end do
      end do
      ! per block, its members' adjoints folded onto one entry of each pair (Re(dU Y) over a
      ! pair is Re(dU[e] (Y[e] + s conj(Y[partner])))), in real form: yc(i, m) = Re, yc(i, us + m) = -Im
      do big = 0, tj
        n = n_members(big)
        do m = off(big) + 1, off(big) + nhalf(big)
          local = m - off(big) - 1
          partner = off(big) + (big + 1)**2 - local
          sgn = real(1 - 2 * mod(local / (big + 1) + mod(local, big + 1), 2), dp)
          do mm = 1, n
            yv = y(m, members(mm, big))
            if (partner /= m) yv = yv + sgn * conjg(y(partner, members(mm, big)))
            yc(mm, m) = real(yv, dp)
            yc(mm, us + m) = -aimag(yv)
          end do
        end do
      end do
      do k = 1, ne
        e = int(starts(i)) + k
        step(1:nf, :) = 0.0_dp
        do big = 0, tj
          n = n_members(big)
          if (n == 0) cycle
          acc(1:n, :) = 0.0_dp
          do m = off(big) + 1, off(big) + nhalf(big)
            dr = real(dw(m, :, k), dp)
            di = aimag(dw(m, :, k))
            do l = 1, 3
              acc(1:n, l) = acc(1:n, l) + dr(l) * yc(1:n, m) + di(l) * yc(1:n, us + m)
            end do
          end do
          do mm = 1, n
            step(members(mm, big), :) = step(members(mm, big), :) + acc(mm, :)
          end do
        end do
        do l = 1, 3
          derivatives(1:nf, l, slots(e) + 1) = derivatives(1:nf, l, slots(e) + 1) + step(1:nf, l)
          derivatives(1:nf, l, own(i) + 1) = derivatives(1:nf, l, own(i) + 1) - step(1:nf, l)
        end do
      end do
    end do
  end function amp_bispectrum_fingerprints

  ! The block J of the U vector that holds (0-based) index idx.
  integer function block_of(idx, tj, off) result(big)
    integer, intent(in) :: idx, tj, off(0:tj + 1)
    do big = 0, tj
      if (idx < off(big + 1)) return
    end do
    big = tj
  end function block_of

  integer(ik) function check_offsets(n_atoms, n_entries, starts, bad_index) result(status)
    integer(ik), intent(in) :: n_atoms, n_entries, starts(n_atoms + 1)
    integer(ik), intent(inout) :: bad_index
    integer :: i
    status = 0
    if (starts(1) /= 0 .or. starts(n_atoms + 1) /= n_entries) then
      status = err_offsets
      bad_index = 0
      return
    end if
    do i = 1, int(n_atoms)
      if (starts(i + 1) < starts(i)) then
        status = err_offsets
        bad_index = i - 1
        return
      end if
    end do
  end function check_offsets

  ! fc(r) and dfc/dr (1/Angstrom): Cosine, or Polynomial with exponent gam (Amp's definitions).
  subroutine cutoff(kind, rc, gam, r, fc, dfc)
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: rc, gam, r
    real(dp), intent(out) :: fc, dfc
    real(dp) :: xr, xg1, xg
    xr = min(r / rc, 1.0_dp)
    if (kind == cut_cosine) then
      fc = 0.5_dp * (cos(pi * xr) + 1.0_dp)
      dfc = (-0.5_dp * pi / rc) * sin(pi * xr)
    else
      xg1 = xr**(gam - 1.0_dp)
      xg = xg1 * xr
      fc = 1.0_dp + gam * xg * xr - (gam + 1.0_dp) * xg
      dfc = (gam * (gam + 1.0_dp) / rc) * xg1 * (xr - 1.0_dp)
    end if
  end subroutine cutoff

  ! Cayley-Klein parameters of the rotation by omega = arcsin(r / rc) about x / r, and
  ! (with deriv) their derivatives with respect to x.
  subroutine cayley_klein(x, r, rc, deriv, a, b, da, db)
    real(dp), intent(in) :: x(3), r, rc
    logical, intent(in) :: deriv
    complex(dp), intent(out) :: a, b, da(3), db(3)
    real(dp) :: sn, cs, ch, sh, unit(3), domega, dch, dsh, dunit(3, 3)
    integer :: k, l
    sn = r / rc
    cs = sqrt(max(1.0_dp - sn * sn, 0.0_dp))
    ch = sqrt(0.5_dp * (1.0_dp + cs))
    sh = sqrt(0.5_dp * (1.0_dp - cs))
    unit = x / r
    a = cmplx(ch, -unit(3) * sh, dp)
    b = -cmplx(unit(2), unit(1), dp) * sh
    if (.not. deriv) return
    domega = 1.0_dp / (rc * cs)
    do l = 1, 3
      do k = 1, 3
        dunit(k, l) = -unit(k) * unit(l) / r
      end do
      dunit(l, l) = dunit(l, l) + 1.0_dp / r
    end do
    do l = 1, 3
      dch = -0.5_dp * sh * domega * unit(l)
      dsh = 0.5_dp * ch * domega * unit(l)
      da(l) = cmplx(dch, -(dunit(3, l) * sh + unit(3) * dsh), dp)
      db(l) = -(cmplx(dunit(2, l), dunit(1, l), dp) * sh + cmplx(unit(2), unit(1), dp) * dsh)
    end do
  end subroutine cayley_klein

  ! The U vector (Wigner matrices of 2j = 0..tj, row-major blocks) and its derivatives,
  ! by the recursion documented in _su2.py.
  subroutine wigner(tj, off, sq, a, b, da, db, deriv, u, du)
    integer, intent(in) :: tj, off(0:tj + 1)
    real(dp), intent(in) :: sq(0:tj + 1)
    complex(dp), intent(in) :: a, b, da(3), db(3)
    logical, intent(in) :: deriv
    complex(dp), intent(out) :: u(:), du(:, :)
    integer :: big, p, q, now, prev
    complex(dp) :: ac, bc, dac(3), dbc(3), v, dv(3)
    real(dp) :: scale
    ac = conjg(a)
    bc = conjg(b)
    dac = conjg(da)
    dbc = conjg(db)
    u(1) = (1.0_dp, 0.0_dp)
    if (deriv) du(1, :) = (0.0_dp, 0.0_dp)
    do big = 1, tj
      do p = 0, big / 2
        do q = 0, big
          v = (0.0_dp, 0.0_dp)
          dv = (0.0_dp, 0.0_dp)
          if (q >= 1) then
            scale = 1.0_dp / sq(q)
            if (p >= 1) then
              prev = off(big - 1) + (p - 1) * big + (q - 1) + 1
              v = v + a * sq(p) * u(prev)
              if (deriv) dv = dv + (a * du(prev, :) + da * u(prev)) * sq(p)
            end if
            if (p <= big - 1) then
              prev = off(big - 1) + p * big + (q - 1) + 1
              v = v + b * sq(big - p) * u(prev)
              if (deriv) dv = dv + (b * du(prev, :) + db * u(prev)) * sq(big - p)
            end if
          else
            scale = 1.0_dp / sq(big)
            if (p >= 1) then
              prev = off(big - 1) + (p - 1) * big + 1
              v = v - bc * sq(p) * u(prev)
              if (deriv) dv = dv - (bc * du(prev, :) + dbc * u(prev)) * sq(p)
            end if
            if (p <= big - 1) then
              prev = off(big - 1) + p * big + 1
              v = v + ac * sq(big - p) * u(prev)
              if (deriv) dv = dv + (ac * du(prev, :) + dac * u(prev)) * sq(big - p)
            end if
          end if
          now = off(big) + p * (big + 1) + q + 1
          u(now) = v * scale
          if (deriv) du(now, :) = dv * scale
        end do
      end do
      do p = big / 2 + 1, big  ! U[p, q] = (-1)^(p-q) conj(U[J-p, J-q])
        do q = 0, big
          now = off(big) + p * (big + 1) + q + 1
          prev = off(big) + (big - p) * (big + 1) + (big - q) + 1
          scale = real(1 - 2 * mod(p + q, 2), dp)
          u(now) = scale * conjg(u(prev))
          if (deriv) du(now, :) = scale * conjg(du(prev, :))
        end do
      end do
    end do
  end subroutine wigner

end module amp_bispectrum_kernels
