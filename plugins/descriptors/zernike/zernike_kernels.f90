! Zernike fingerprints (Khorshidi and Peterson, Comput. Phys. Commun. 207, 310 (2016);
! 3D Zernike functions of Novotni and Klein, Comput.-Aided Des. 36, 1047 (2004)) in the
! conventions of Amp, with the Cosine or Polynomial cutoff: values and derivatives with
! respect to every atom position within the cutoff of each centre.
!
! Called through ctypes from amp_plugins/descriptors/zernike/_fortran.py, which passes the
! tables of _basis.py. Every routine is bind(C) or private; no I/O. Python (n, m) arrays
! are (m, n) arrays here. Indices that come in are 0-based and checked before use; a bad
! input returns an err_* code and the offending 0-based index in bad_index.
!
! Per centre: one pass over its neighbour images computes, for each image, the terms
! P_nl(s) Pi_lm(z, s) (x + i y)^m of every (n, l, m >= 0) and sums the complex c_nlm; with
! derivatives the per-image factors are kept and a second pass forms each image's
! gradient d G / d r_ij, added to block (i, j) and subtracted from block (i, i).
module amp_zernike_kernels
  use, intrinsic :: iso_c_binding, only: c_int64_t, c_double
  implicit none
  private
  public :: amp_zernike_abi_version, amp_zernike_fingerprints

  integer, parameter :: dp = c_double, ik = c_int64_t
  real(dp), parameter :: pi = 3.14159265358979323846264338327950288_dp
  integer(ik), parameter :: abi_version = 1

  integer(ik), parameter :: err_shape = 1      ! a size argument is negative or inconsistent
  integer(ik), parameter :: err_element = 2    ! an atom's element code is out of range
  integer(ik), parameter :: err_offsets = 3    ! neighbour offsets are not 0 .. n_entries, ascending
  integer(ik), parameter :: err_neighbour = 4  ! a neighbour atom index is out of range
  integer(ik), parameter :: err_term = 5       ! a term's feature, l or m is out of range
  integer(ik), parameter :: err_cutoff = 6     ! unknown cutoff kind or Rc <= 0
  integer(ik), parameter :: err_slot = 7       ! a derivative block index is out of range
  integer(ik), parameter :: err_overlap = 8    ! a neighbour at zero distance
  integer(ik), parameter :: err_memory = 9     ! scratch memory could not be allocated

  integer(ik), parameter :: cut_cosine = 1, cut_polynomial = 2

contains

  !> Return the version of the argument list of amp_zernike_fingerprints.
  function amp_zernike_abi_version() result(version) bind(C, name="amp_zernike_abi_version")
    integer(ik) :: version
    version = abi_version
  end function amp_zernike_abi_version

  !> Compute the fingerprints (and derivative blocks) of one structure.
  !>
  !> Shapes (Fortran order):
  !>   atom_el(n_atoms): element code 0..n_el-1; weights(n_el, n_el): weights(b+1, a+1) is
  !>     the weight of a neighbour of element b around a centre of element a.
  !>   first(n_atoms+1), nb_atom(n_entries), nb_vec(3, n_entries): neighbour images of centre
  !>     i are first(i+1) .. first(i+2)-1 (0-based), vectors R_j + shift - R_i (Angstrom).
  !>   radial(n_rad, n_feat): P_nl(s) = sum_t radial(t+1, f) s^t.
  !>   t_feat, t_l, t_m, t_scale(n_terms): each term's feature (0-based), l, m and weight.
  !>   nb_slot(n_entries), centre_slot(n_atoms): derivative blocks; read when want_deriv /= 0.
  !>   values(n_feat, n_atoms), derivs(n_feat, 3, n_pairs): outputs (overwritten).
  function amp_zernike_fingerprints(n_atoms, n_el, atom_el, weights, n_entries, first, nb_atom, &
                                    nb_vec, cut_kind, rc, cut_gamma, lmax, n_feat, n_rad, radial, &
                                    n_terms, t_feat, t_l, t_m, t_scale, want_deriv, n_pairs, &
                                    nb_slot, centre_slot, values, derivs, bad_index) &
    result(status) bind(C, name="amp_zernike_fingerprints")
    integer(ik), value :: n_atoms, n_el, n_entries, cut_kind, lmax, n_feat, n_rad, n_terms
    integer(ik), value :: want_deriv, n_pairs
    real(dp), value :: rc, cut_gamma
    integer(ik), intent(in) :: atom_el(n_atoms), first(n_atoms + 1), nb_atom(n_entries)
    real(dp), intent(in) :: weights(n_el, n_el), nb_vec(3, n_entries), radial(n_rad, n_feat)
    integer(ik), intent(in) :: t_feat(n_terms), t_l(n_terms), t_m(n_terms)
    real(dp), intent(in) :: t_scale(n_terms)
    integer(ik), intent(in) :: nb_slot(n_entries), centre_slot(n_atoms)
    real(dp), intent(out) :: values(n_feat, n_atoms), derivs(n_feat, 3, n_pairs)
    integer(ik), intent(out) :: bad_index
    integer(ik) :: status, i, e, widest
    logical :: deriv
    ! per image of one centre: cutoff, weight, scaled vector, terms and their derivatives
    real(dp), allocatable :: fw(:), dfw(:), d(:, :), r(:), qr(:, :), qi(:, :)
    real(dp), allocatable :: g(:, :), gs(:, :), gz(:, :)
    ! per image: Legendre part Pi(l, m) and its z and s derivatives; radial P and dP/ds
    real(dp), allocatable :: pl(:, :), pz(:, :), ps(:, :), p(:), dp_ds(:)
    real(dp), allocatable :: c_re(:), c_im(:), ge(:, :), along(:)
    integer :: fail

    bad_index = -1
    deriv = want_deriv /= 0
    status = check_input(n_atoms, n_el, atom_el, n_entries, first, nb_atom, cut_kind, rc, lmax, &
                         n_feat, n_rad, n_terms, t_feat, t_l, t_m, deriv, n_pairs, nb_slot, &
                         centre_slot, bad_index)
    if (status /= 0) return
    values = 0.0_dp
    if (deriv) derivs = 0.0_dp
    widest = 1
    do i = 1, n_atoms
      widest = max(widest, first(i + 1) - first(i))
    end do
    allocate (fw(widest), dfw(widest), d(3, widest), r(widest), qr(0:lmax, widest), &
              qi(0:lmax, widest), g(n_terms, widest), gs(n_terms, widest), gz(n_terms, widest), &
              pl(0:lmax, 0:lmax), pz(0:lmax, 0:lmax), ps(0:lmax, 0:lmax), p(n_feat), &
              dp_ds(n_feat), c_re(n_terms), c_im(n_terms), ge(n_feat, 3), along(n_feat), stat=fail)
    if (fail /= 0) then
      status = err_memory
      return
    end if
    do i = 1, n_atoms
      do e = first(i) + 1, first(i + 1)
        if (dot_product(nb_vec(:, e), nb_vec(:, e)) <= 0.0_dp) then
          status = err_overlap
          bad_index = e - 1
          return
        end if
      end do
      call centre(i)
    end do

  contains

    !> Values (and derivative blocks) of centre i.
    subroutine centre(i)
      integer(ik), intent(in) :: i
      integer(ik) :: e0, ne, k, e, t
      real(dp) :: w, fc, dfc, s, a
      e0 = first(i)
      ne = first(i + 1) - e0
      c_re = 0.0_dp
      c_im = 0.0_dp
      do k = 1, ne
        e = e0 + k
        w = weights(atom_el(nb_atom(e) + 1) + 1, atom_el(i) + 1)
        r(k) = sqrt(dot_product(nb_vec(:, e), nb_vec(:, e)))
        call cutoff(r(k), fc, dfc)
        fw(k) = w * fc
        dfw(k) = w * dfc
        d(:, k) = nb_vec(:, e) / rc
        s = dot_product(d(:, k), d(:, k))
        call powers(d(1, k), d(2, k), qr(:, k), qi(:, k))
        call legendre(d(3, k), s)
        call radial_part(s)
        do t = 1, n_terms
          g(t, k) = p(t_feat(t) + 1) * pl(t_l(t), t_m(t))
          if (deriv) then
            gs(t, k) = dp_ds(t_feat(t) + 1) * pl(t_l(t), t_m(t)) + p(t_feat(t) + 1) * ps(t_l(t), t_m(t))
            gz(t, k) = p(t_feat(t) + 1) * pz(t_l(t), t_m(t))
          end if
          a = fw(k) * g(t, k)
          c_re(t) = c_re(t) + a * qr(t_m(t), k)
          c_im(t) = c_im(t) + a * qi(t_m(t), k)
        end do
      end do
      do t = 1, n_terms
        values(t_feat(t) + 1, i) = values(t_feat(t) + 1, i) + t_scale(t) * (c_re(t)**2 + c_im(t)**2)
      end do
      if (.not. deriv) return
      c_re = 2.0_dp * t_scale * c_re
      c_im = 2.0_dp * t_scale * c_im
      do k = 1, ne
        call image_gradient(k)
        e = e0 + k
        derivs(:, :, nb_slot(e) + 1) = derivs(:, :, nb_slot(e) + 1) + ge
        derivs(:, :, centre_slot(i) + 1) = derivs(:, :, centre_slot(i) + 1) - ge
      end do
    end subroutine centre

    !> ge(f, :) = d G_f / d r_ij of image k of the current centre (c_re, c_im already scaled).
    !> d(w fc f)/dr = (w fc / Rc) grad_d f + w dfc f r / |r|: the terms along r_ij share one
    !> factor per feature (along), added once after the loop over terms.
    subroutine image_gradient(k)
      integer(ik), intent(in) :: k
      integer(ik) :: t, m, f
      real(dp) :: u, ux, uy, scale, to_s, to_r
      scale = fw(k) / rc
      to_s = 2.0_dp * fw(k) / (rc * rc)
      to_r = dfw(k) / r(k)
      ge = 0.0_dp
      along = 0.0_dp
      do t = 1, n_terms
        m = t_m(t)
        f = t_feat(t) + 1
        u = c_re(t) * qr(m, k) + c_im(t) * qi(m, k)
        if (m > 0) then
          ux = m * (c_re(t) * qr(m - 1, k) + c_im(t) * qi(m - 1, k))
          uy = m * (c_im(t) * qr(m - 1, k) - c_re(t) * qi(m - 1, k))
          ge(f, 1) = ge(f, 1) + ux * g(t, k)
          ge(f, 2) = ge(f, 2) + uy * g(t, k)
        end if
        ge(f, 3) = ge(f, 3) + u * gz(t, k)
        along(f) = along(f) + u * (to_s * gs(t, k) + to_r * g(t, k))
      end do
      do m = 1, 3
        ge(:, m) = scale * ge(:, m) + along * (d(m, k) * rc)
      end do
    end subroutine image_gradient

    !> fc(r) and dfc/dr (1/Angstrom); zero beyond Rc.
    subroutine cutoff(rr, fc, dfc)
      real(dp), intent(in) :: rr
      real(dp), intent(out) :: fc, dfc
      real(dp) :: x, xg1
      x = min(rr / rc, 1.0_dp)
      if (cut_kind == cut_cosine) then
        fc = 0.5_dp * (cos(pi * x) + 1.0_dp)
        dfc = -0.5_dp * pi / rc * sin(pi * x)
      else
        xg1 = x**(cut_gamma - 1.0_dp)
        fc = 1.0_dp + cut_gamma * xg1 * x * x - (cut_gamma + 1.0_dp) * xg1 * x
        dfc = cut_gamma * (cut_gamma + 1.0_dp) / rc * xg1 * (x - 1.0_dp)
      end if
    end subroutine cutoff

    !> Real and imaginary parts of (x + i y)^m, m = 0..lmax.
    subroutine powers(x, y, re, im)
      real(dp), intent(in) :: x, y
      real(dp), intent(out) :: re(0:lmax), im(0:lmax)
      integer(ik) :: m
      re(0) = 1.0_dp
      im(0) = 0.0_dp
      do m = 1, lmax
        re(m) = x * re(m - 1) - y * im(m - 1)
        im(m) = x * im(m - 1) + y * re(m - 1)
      end do
    end subroutine powers

    !> pl(l, m) = Pi_lm(z, s) and (with derivatives) pz, ps = its z and s derivatives.
    subroutine legendre(z, s)
      real(dp), intent(in) :: z, s
      integer(ik) :: l, m
      real(dp) :: df, a, b
      df = 1.0_dp
      do m = 0, lmax
        if (m > 0) df = df * (2 * m - 1)
        pl(m, m) = df
        pz(m, m) = 0.0_dp
        ps(m, m) = 0.0_dp
        if (m + 1 <= lmax) then
          pl(m + 1, m) = (2 * m + 1) * z * df
          pz(m + 1, m) = (2 * m + 1) * df
          ps(m + 1, m) = 0.0_dp
        end if
        do l = m + 2, lmax
          a = real(2 * l - 1, dp) / real(l - m, dp)
          b = real(l + m - 1, dp) / real(l - m, dp)
          pl(l, m) = a * z * pl(l - 1, m) - b * s * pl(l - 2, m)
          if (.not. deriv) cycle
          pz(l, m) = a * (pl(l - 1, m) + z * pz(l - 1, m)) - b * s * pz(l - 2, m)
          ps(l, m) = a * z * ps(l - 1, m) - b * (pl(l - 2, m) + s * ps(l - 2, m))
        end do
      end do
    end subroutine legendre

    !> p(f) = P_nl(s) and dp_ds(f) = dP_nl/ds of every feature.
    subroutine radial_part(s)
      real(dp), intent(in) :: s
      integer(ik) :: f, t
      real(dp) :: power, dpower
      do f = 1, n_feat
        p(f) = radial(1, f)
        dp_ds(f) = 0.0_dp
        power = 1.0_dp
        dpower = 0.0_dp
        do t = 2, n_rad
          dpower = (t - 1) * power
          power = power * s
          p(f) = p(f) + radial(t, f) * power
          dp_ds(f) = dp_ds(f) + radial(t, f) * dpower
        end do
      end do
    end subroutine radial_part

  end function amp_zernike_fingerprints

  !> Check sizes, codes, offsets, term table and block indices; return 0 or an err_* code.
  function check_input(n_atoms, n_el, atom_el, n_entries, first, nb_atom, cut_kind, rc, lmax, &
                       n_feat, n_rad, n_terms, t_feat, t_l, t_m, deriv, n_pairs, nb_slot, &
                       centre_slot, bad_index) result(status)
    integer(ik), intent(in) :: n_atoms, n_el, n_entries, cut_kind, lmax, n_feat, n_rad, n_terms, n_pairs
    integer(ik), intent(in) :: atom_el(n_atoms), first(n_atoms + 1), nb_atom(n_entries)
    integer(ik), intent(in) :: t_feat(n_terms), t_l(n_terms), t_m(n_terms)
    integer(ik), intent(in) :: nb_slot(n_entries), centre_slot(n_atoms)
    real(dp), intent(in) :: rc
    logical, intent(in) :: deriv
    integer(ik), intent(inout) :: bad_index
    integer(ik) :: status, k
    status = 0
    if (n_atoms < 0 .or. n_el < 1 .or. n_entries < 0 .or. lmax < 0 .or. n_feat < 1 .or. n_rad < 1 &
        .or. n_terms < 1 .or. n_pairs < 0) then
      status = err_shape
      return
    end if
    if (.not. (cut_kind == cut_cosine .or. cut_kind == cut_polynomial) .or. .not. rc > 0.0_dp) then
      status = err_cutoff
      return
    end if
    do k = 1, n_atoms
      if (atom_el(k) < 0 .or. atom_el(k) >= n_el) then
        status = err_element
        bad_index = k - 1
        return
      end if
    end do
    if (first(1) /= 0 .or. first(n_atoms + 1) /= n_entries) then
      status = err_offsets
      bad_index = 0
      return
    end if
    do k = 1, n_atoms
      if (first(k + 1) < first(k)) then
        status = err_offsets
        bad_index = k - 1
        return
      end if
    end do
    do k = 1, n_entries
      if (nb_atom(k) < 0 .or. nb_atom(k) >= n_atoms) then
        status = err_neighbour
        bad_index = k - 1
        return
      end if
    end do
    do k = 1, n_terms
      if (t_feat(k) < 0 .or. t_feat(k) >= n_feat .or. t_l(k) < 0 .or. t_l(k) > lmax &
          .or. t_m(k) < 0 .or. t_m(k) > t_l(k)) then
        status = err_term
        bad_index = k - 1
        return
      end if
    end do
    if (.not. deriv) return
    do k = 1, n_entries
      if (nb_slot(k) < 0 .or. nb_slot(k) >= n_pairs) then
        status = err_slot
        bad_index = k - 1
        return
      end if
    end do
    do k = 1, n_atoms
      if (centre_slot(k) < 0 .or. centre_slot(k) >= n_pairs) then
        status = err_slot
        bad_index = n_entries + k - 1
        return
      end if
    end do
  end function check_input

end module amp_zernike_kernels
