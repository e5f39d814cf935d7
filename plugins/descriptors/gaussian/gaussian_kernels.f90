! Gaussian symmetry functions (Behler and Parrinello, PRL 98, 146401 (2007); Behler,
! J. Chem. Phys. 134, 074106 (2011)) in the conventions of Amp: G2, G4 and G5 with the
! Cosine or Polynomial cutoff, their values and their derivatives with respect to every
! atom position within the cutoff of each centre.
!
! Called through ctypes from amp_plugins/descriptors/gaussian/_fortran.py. Every routine
! is bind(C); no Fortran I/O, no runtime library calls. Arrays are C-ordered on the
! Python side, so a Python (n, m) array is an (m, n) array here. All indices that come
! in are 0-based and are checked before use; a bad input returns an error code (see
! the err_* constants) and the offending 0-based index in bad_index.
!
! Speed (one core, vectorised without -ffast-math, so results stay those of plain IEEE
! arithmetic): a centre's neighbours are gathered neighbour-index first and sorted by
! element; for a neighbour j the pairs (j, k > j) with neighbours k of one element form a
! contiguous batch, padded to a multiple of 4, in which G4 pairs with r_jk >= Rc are masked
! by a zero cutoff; shared factors are computed once per batch (and per eta), integer zeta
! uses multiplication, and sums use four interleaved partial sums.
!
! The one-pass contraction (forces for MD) never forms per-feature derivatives: the pairs
! (j, k) that contribute are compacted into long chunks per element pair and group, a values
! pass gives the fingerprints, the caller returns dE/dG, and a second pass over the same
! pairs sums the group's dE/dG-weighted terms into three scalars per triplet (the
! coefficients of dcos, d(sum r^2) and d(cutoffs)), whatever the number of functions;
! powers are computed once per distinct (zeta, gamma), exponentials once per eta.
!
! Size: one module of about 1,600 lines in two files (the one-pass contraction's routines and the
! angular shell are in gaussian_contract.inc, included below, so each file stays under 1,000
! lines); its parts share private types, and one source file keeps the bounds-checked test build
! a single gfortran call (tests/test_gaussian_fortran.py). The build does not see the included
! file: after editing gaussian_contract.inc, touch this file so an editable install rebuilds.
module amp_gaussian_kernels
  use, intrinsic :: iso_c_binding, only: c_int64_t, c_double, c_funptr, c_f_procpointer
  implicit none
  private
  public :: amp_gaussian_abi_version, amp_gaussian_fingerprints, amp_gaussian_contract

  integer, parameter :: dp = c_double, ik = c_int64_t
  real(dp), parameter :: pi = 3.14159265358979323846264338327950288_dp
  integer(ik), parameter :: abi_version = 5

  integer(ik), parameter :: err_shape = 1      ! a size argument is negative or inconsistent
  integer(ik), parameter :: err_element = 2    ! an atom's element code is out of range
  integer(ik), parameter :: err_offsets = 3    ! neighbour offsets are not 0 .. n_entries, ascending
  integer(ik), parameter :: err_neighbour = 4  ! a neighbour atom index is out of range
  integer(ik), parameter :: err_feature = 5    ! a feature type or element code is invalid
  integer(ik), parameter :: err_cutoff = 6     ! unknown cutoff kind or Rc <= 0
  integer(ik), parameter :: err_slot = 7       ! a derivative block index is out of range
  integer(ik), parameter :: err_overlap = 8    ! a neighbour at zero distance
  integer(ik), parameter :: err_memory = 9     ! scratch memory could not be allocated
  integer(ik), parameter :: err_singular = 10  ! zeta < 1 and 1 + gamma cos = 0 on a contributing pair
  ! (with derivatives; bad_index = entry_j * n_entries + entry_k, the pair's 0-based neighbour entries)

  ! With zeta < 1, 1 + gamma cos at most this (collinear to round-off) has no finite derivative.
  real(dp), parameter :: singular_base = 1.0e-12_dp
  integer(ik), parameter :: err_callback = 11  ! the gradient callback reported a failure

  integer(ik), parameter :: cut_cosine = 1, cut_polynomial = 2

  ! The cutoff function: kind, radius Rc (Angstrom), polynomial gamma (integer copy or -1).
  type :: cutoff_t
    integer(ik) :: kind
    real(dp) :: rc, gam
    integer :: igam
  end type cutoff_t

  ! Feature groups: the features of a centre element that one neighbour (radial) or one
  ! unordered neighbour pair (angular) contributes to, in CSR form (members ptr(id) ..
  ! ptr(id+1)-1), with each member's column and parameters copied in member order.
  ! Angular groups also list their distinct (zeta, gamma): nu(id) of them, at ptr(id) ..
  ! ptr(id)+nu(id)-1 of uzeta, ugam, uiz (integer zeta or 0); member m uses upow(m) (1-based
  ! within its group), so one power per pair serves every eta with that (zeta, gamma).
  type :: groups_t
    integer :: ne, base4, base5, largest, largest_angular
    integer, allocatable :: ptr(:), col(:), izeta(:), nu(:), upow(:), uiz(:)
    real(dp), allocatable :: eta(:), offset(:), zeta(:), gam(:), pref(:), uzeta(:), ugam(:)
  end type groups_t

  ! One centre's neighbours (gathered from the list), neighbour index first so loops over
  ! neighbours are contiguous: vectors x(n, :) = R_n - R_centre, 1/r, r^2, cutoff values,
  ! element and derivative block. The derivative of feature f with respect to R_n is
  ! d(n, :, f) + sd(n, f) x(n, :) (terms along x(n, :) are gathered as scalars in sd).
  type :: shell_t
    integer :: n
    real(dp), allocatable :: x(:, :), r(:), inv_r(:), r2(:), fc(:), dfc(:), d(:, :, :), sd(:, :)
    integer, allocatable :: el(:), seg(:)
    integer(ik), allocatable :: slot(:), entry(:)
    integer(ik) :: bad_j = -1, bad_k = -1  ! first singular pair found (see err_singular)
  end type shell_t

  ! The neighbour pairs (j, k), k = k0 .. k0+n-1 (element b), of one neighbour j: their
  ! shared factors (see collect), per-eta factors (see eta_factors) and per-feature terms.
  type :: batch_t
    integer :: n
    real(dp), allocatable :: c(:), cjc(:), c_k(:), c_a(:), sr(:), fcut(:), dij(:), dik(:), djk(:)
    real(dp), allocatable :: ex(:), exf(:), bj(:), bjk(:), bk(:), ecj(:), eca(:), eck(:)
    real(dp), allocatable :: a(:), a_jj(:), a_jk(:)
  end type batch_t

  ! The one-pass contraction's scratch. For one centre, one neighbour-element pair and one
  ! feature group, the neighbour pairs (j, k > j) that contribute (G4: r_jk < Rc) are compacted
  ! into entries 1 .. nq (jj, kk: shell indices), at most chunk at a time, padded to n, a
  ! multiple of 4, with zero cutoff products at the shell's spare entry: x_j, x_k, 1/r_j,
  ! 1/r_k, cos c, cutoff product f, sum of squared distances sr, the cutoff-derivative
  ! factors dj, dk, gq (see pair_factors); pw(:, u) = (1 + gamma c)^(zeta - 1) and
  ! pz(:, u) = (1 + gamma c)^zeta of each distinct (zeta, gamma) u. Per neighbour n of the
  ! centre and set m of dE/dG: dE/dx_n = dv(n, :, m) + sv(n, m) x_n. rows, grad: the batch of
  ! centres given to the callback and its dE/dG (grad(:, b, m): centre b, set m).
  type :: tri_t
    integer :: n, nq, chunk
    integer, allocatable :: jj(:), kk(:)
    integer(ik), allocatable :: rows(:)
    real(dp), allocatable :: c(:), f(:), sr(:), dj(:), dk(:), gq(:), xj(:, :), xk(:, :), irj(:), irk(:)
    real(dp), allocatable :: ex(:), bb(:), pw(:, :), pz(:, :), pp(:), qq(:), uu(:), vv(:), ww(:)
    real(dp), allocatable :: sv(:, :), dv(:, :, :), grad(:, :, :)
  end type tri_t

  ! amp_gaussian_fingerprints takes its angular values from the folded routine (angular_pass,
  ! the one amp_gaussian_contract uses) when some G4/G5 group has more than fold_min functions
  ! (there it is much faster), else from the per-feature routine (angular), which also gives the
  ! derivative blocks; so values with and without derivatives are the same numbers, and with
  ! wide groups also those of the contraction.
  integer, parameter :: fold_min = 8

  ! Neighbour pairs per chunk of the folded routines (scratch of ~180 bytes per pair plus 16 per
  ! distinct (zeta, gamma)): long enough that loop overheads vanish, short enough for the L1/L2
  ! cache (256 measured faster than 2048 and about as fast as 128).
  integer, parameter :: chunk_pairs = 256

  ! The caller's dE/dG for a batch of centres (see amp_gaussian_contract); returns 0 or a failure.
  abstract interface
    function gradient_callback(n, rows, nf, nsets, vals, grad) result(status) bind(C)
      import :: c_int64_t, c_double
      integer(c_int64_t), value :: n, nf, nsets
      integer(c_int64_t), intent(in) :: rows(n)
      real(c_double), intent(in) :: vals(nf, n)
      real(c_double), intent(out) :: grad(nf, n, nsets)
      integer(c_int64_t) :: status
    end function gradient_callback
  end interface

  ! Taylor coefficients of sin v (v^3 .. v^15) and cos v (v^2 .. v^16), |v| <= pi/4.
  real(dp), parameter :: sin_c(7) = [ &
    -1.66666666666666657e-01_dp, 8.33333333333333322e-03_dp, -1.98412698412698413e-04_dp, &
    2.75573192239858925e-06_dp, -2.50521083854417202e-08_dp, 1.60590438368216133e-10_dp, &
    -7.64716373181981641e-13_dp]
  real(dp), parameter :: cos_c(8) = [ &
    -5.00000000000000000e-01_dp, 4.16666666666666644e-02_dp, -1.38888888888888894e-03_dp, &
    2.48015873015873016e-05_dp, -2.75573192239858883e-07_dp, 2.08767569878681002e-09_dp, &
    -1.14707455977297245e-11_dp, 4.77947733238738525e-14_dp]

contains

  !> Return the version of the argument list of amp_gaussian_fingerprints.
  function amp_gaussian_abi_version() result(version) bind(C, name="amp_gaussian_abi_version")
    integer(ik) :: version
    version = abi_version
  end function amp_gaussian_abi_version

  !> Compute the fingerprints (and derivative blocks) of one structure.
  !>
  !> Shapes (Fortran order; the Python arrays are the transposes):
  !>   atom_el(n_atoms): element code 0..n_el-1 of each atom.
  !>   first(n_atoms+1): neighbour entries of centre i are first(i+1) .. first(i+2)-1 (0-based).
  !>   nb_atom(n_entries), nb_vec(3, n_entries): neighbour atom and vector R_j - R_i (Angstrom),
  !>     periodic images included.
  !>   cut_kind, rc, cut_gamma, rc_angular: cutoff (1 Cosine, 2 Polynomial with exponent cut_gamma)
  !>     at Rc; the G4/G5 functions take the same kind at rc_angular (0 < rc_angular <= Rc) instead.
  !>   nf(n_el), ftype/fel1/fel2/feta/fzeta/fgamma/foffset(nf_max, n_el): feature table; type
  !>     2, 4 or 5; element codes (fel2 unused for G2); eta, zeta, gamma, offset (Angstrom).
  !>   nb_slot(n_entries), centre_slot(n_atoms): derivative block (0-based) of each neighbour
  !>     entry and of each centre itself; read only when want_deriv /= 0.
  !>   values(nf_max, n_atoms), derivs(nf_max, 3, n_pairs): outputs (overwritten).
  !> Returns 0, or an err_* code with the 0-based offending index in bad_index.
  function amp_gaussian_fingerprints(n_atoms, n_el, atom_el, n_entries, first, nb_atom, nb_vec, &
                                     cut_kind, rc, cut_gamma, rc_angular, nf_max, nf, ftype, fel1, fel2, &
                                     feta, fzeta, fgamma, foffset, want_deriv, n_pairs, nb_slot, &
                                     centre_slot, values, derivs, bad_index) &
    result(status) bind(C, name="amp_gaussian_fingerprints")
    integer(ik), value :: n_atoms, n_el, n_entries, cut_kind, nf_max, want_deriv, n_pairs
    real(dp), value :: rc, cut_gamma, rc_angular
    integer(ik), intent(in) :: atom_el(n_atoms), first(n_atoms + 1), nb_atom(n_entries)
    real(dp), intent(in) :: nb_vec(3, n_entries)
    integer(ik), intent(in) :: nf(n_el), ftype(nf_max, n_el), fel1(nf_max, n_el), fel2(nf_max, n_el)
    real(dp), intent(in) :: feta(nf_max, n_el), fzeta(nf_max, n_el), fgamma(nf_max, n_el)
    real(dp), intent(in) :: foffset(nf_max, n_el)
    integer(ik), intent(in) :: nb_slot(n_entries), centre_slot(n_atoms)
    real(dp), intent(out) :: values(nf_max, n_atoms), derivs(nf_max, 3, n_pairs)
    integer(ik), intent(out) :: bad_index
    integer(ik) :: status
    type(cutoff_t) :: cut, cut_a
    type(groups_t) :: groups
    type(shell_t), target :: shell, shell_a
    type(shell_t), pointer :: sa
    type(batch_t) :: batch
    type(tri_t) :: tri
    logical :: deriv, folded
    integer(ik) :: i

    bad_index = -1
    deriv = want_deriv /= 0
    status = check_sizes(n_atoms, n_el, n_entries, nf_max, n_pairs, first, bad_index)
    if (status == 0) status = check_atoms(n_atoms, n_el, n_entries, atom_el, nb_atom, bad_index)
    if (status == 0) status = check_table(n_el, nf_max, nf, ftype, fel1, fel2, bad_index)
    if (status == 0 .and. deriv) status = check_slots(n_pairs, nb_slot, centre_slot, bad_index)
    if (status == 0) status = make_cutoffs(cut_kind, rc, cut_gamma, rc_angular, cut, cut_a)
    if (status /= 0) return

    status = build_groups(int(n_el), int(nf_max), nf, ftype, fel1, fel2, feta, fzeta, fgamma, foffset, groups)
    if (status == 0) status = allocate_shell(largest_shell(n_atoms, first), int(nf_max), int(n_el), &
                                             deriv, shell, batch)
    if (status == 0) status = angular_shell(cut, cut_a, largest_shell(n_atoms, first), int(nf_max), int(n_el), &
                                            deriv, shell, shell_a, sa)
    ! wide groups: the angular values of contract_folded (same numbers from every routine)
    folded = groups%largest_angular > fold_min
    if (status == 0 .and. folded) status = allocate_tri(largest_shell(n_atoms, first), groups, 1, 1, &
                                                        int(nf_max), tri)
    if (status /= 0) return
    values = 0
    if (deriv) derivs = 0
    do i = 1, n_atoms
      status = gather_shell(cut, first(i) + 1, first(i + 1), nb_vec, nb_atom, atom_el, nb_slot, &
                            deriv, deriv, shell, bad_index)
      if (status /= 0) return
      call radial(int(atom_el(i)) + 1, shell, groups, cut%rc, deriv, values(:, i))
      if (.not. associated(sa, shell)) call inner_shell(shell, cut_a, deriv, sa)
      if (folded) then
        if (deriv) then  ! derivatives only: its values are discarded
          tri%grad(:, 1, 1) = 0
          call angular(int(atom_el(i)) + 1, sa, groups, cut_a, .true., tri%grad(:, 1, 1), batch)
        end if
        call angular_pass(int(atom_el(i)) + 1, sa, groups, cut_a, .false., values(:, i), tri%grad(:, 1, :), tri)
      else
        call angular(int(atom_el(i)) + 1, sa, groups, cut_a, deriv, values(:, i), batch)
      end if
      if (sa%bad_j >= 0) then
        status = err_singular
        bad_index = sa%bad_j * n_entries + sa%bad_k
        return
      end if
      if (deriv) call scatter(shell, centre_slot(i) + 1, derivs)
      if (deriv .and. .not. associated(sa, shell)) call scatter(sa, centre_slot(i) + 1, derivs)
    end do
  end function amp_gaussian_fingerprints

  !> Compute the fingerprints and the forces of one structure in one pass: centres are taken
  !> in batches of batch_size; once a batch's fingerprints are known the callback returns
  !> dE/dG for them, and the batch's derivatives (kept for that batch only) are contracted
  !> with it into de_dr(3, n_atoms) = dE/dR and, with want_virial /= 0, into
  !> virial(3, 3) = sum over neighbour images of (dE/d r_ij) outer r_ij (the Python (3, 3)
  !> array's [a, b] is the sum of dE/d r_a times r_b). With n_sets > 1 the callback returns
  !> n_sets sets of dE/dG (an ensemble's members; grad(nf, n, n_sets)), each contracted into its
  !> own de_dr(:, :, m) and virial(:, :, m); the sets share every pair's factors and powers.
  !> Arguments as amp_gaussian_fingerprints; returns 0 or an err_* code (err_callback when
  !> the callback returned non-zero; bad_index is then the first row of the batch).
  function amp_gaussian_contract(n_atoms, n_el, atom_el, n_entries, first, nb_atom, nb_vec, &
                                 cut_kind, rc, cut_gamma, rc_angular, nf_max, nf, ftype, fel1, fel2, &
                                 feta, fzeta, fgamma, foffset, batch_size, n_sets, callback, want_virial, &
                                 values, de_dr, virial, bad_index) &
    result(status) bind(C, name="amp_gaussian_contract")
    integer(ik), value :: n_atoms, n_el, n_entries, cut_kind, nf_max, batch_size, n_sets, want_virial
    real(dp), value :: rc, cut_gamma, rc_angular
    type(c_funptr), value :: callback
    integer(ik), intent(in) :: atom_el(n_atoms), first(n_atoms + 1), nb_atom(n_entries)
    real(dp), intent(in) :: nb_vec(3, n_entries)
    integer(ik), intent(in) :: nf(n_el), ftype(nf_max, n_el), fel1(nf_max, n_el), fel2(nf_max, n_el)
    real(dp), intent(in) :: feta(nf_max, n_el), fzeta(nf_max, n_el), fgamma(nf_max, n_el)
    real(dp), intent(in) :: foffset(nf_max, n_el)
    real(dp), intent(out) :: values(nf_max, n_atoms), de_dr(3, n_atoms, n_sets), virial(3, 3, n_sets)
    integer(ik), intent(out) :: bad_index
    integer(ik) :: status
    procedure(gradient_callback), pointer :: gradient
    type(cutoff_t) :: cut, cut_a
    type(groups_t) :: groups

    bad_index = -1
    status = check_sizes(n_atoms, n_el, n_entries, nf_max, 0_ik, first, bad_index)
    if (status == 0 .and. (batch_size < 1 .or. n_sets < 1)) status = err_shape
    if (status == 0) status = check_atoms(n_atoms, n_el, n_entries, atom_el, nb_atom, bad_index)
    if (status == 0) status = check_table(n_el, nf_max, nf, ftype, fel1, fel2, bad_index)
    if (status == 0) status = make_cutoffs(cut_kind, rc, cut_gamma, rc_angular, cut, cut_a)
    if (status /= 0) return
    call c_f_procpointer(callback, gradient)
    status = build_groups(int(n_el), int(nf_max), nf, ftype, fel1, fel2, feta, fzeta, fgamma, foffset, groups)
    if (status /= 0) return
    values = 0
    de_dr = 0
    virial = 0
    status = contract_folded(n_atoms, atom_el, n_entries, first, nb_atom, nb_vec, cut, cut_a, groups, nf_max, &
                             batch_size, n_sets, gradient, want_virial /= 0, values, de_dr, virial, bad_index)
  end function amp_gaussian_contract

  ! The one-pass contraction's routines (contract_folded and the folded angular terms).
  include 'gaussian_contract.inc'

  ! ---------------------------------------------------------------- input checks

  integer(ik) function check_sizes(n_atoms, n_el, n_entries, nf_max, n_pairs, first, bad) result(status)
    integer(ik), intent(in) :: n_atoms, n_el, n_entries, nf_max, n_pairs, first(n_atoms + 1)
    integer(ik), intent(inout) :: bad
    integer(ik) :: i
    status = 0
    if (n_atoms < 0 .or. n_el < 1 .or. n_entries < 0 .or. nf_max < 0 .or. n_pairs < 0) then
      status = err_shape
      return
    end if
    if (first(1) /= 0 .or. first(n_atoms + 1) /= n_entries) then
      status = err_offsets
      bad = merge(0_ik, n_atoms, first(1) /= 0)
      return
    end if
    do i = 1, n_atoms
      if (first(i + 1) < first(i)) then
        status = err_offsets
        bad = i
        return
      end if
    end do
  end function check_sizes

  integer(ik) function check_atoms(n_atoms, n_el, n_entries, atom_el, nb_atom, bad) result(status)
    integer(ik), intent(in) :: n_atoms, n_el, n_entries, atom_el(n_atoms), nb_atom(n_entries)
    integer(ik), intent(inout) :: bad
    integer(ik) :: i
    status = 0
    do i = 1, n_atoms
      if (atom_el(i) < 0 .or. atom_el(i) >= n_el) then
        status = err_element
        bad = i - 1
        return
      end if
    end do
    do i = 1, n_entries
      if (nb_atom(i) < 0 .or. nb_atom(i) >= n_atoms) then
        status = err_neighbour
        bad = i - 1
        return
      end if
    end do
  end function check_atoms

  integer(ik) function check_table(n_el, nf_max, nf, ftype, fel1, fel2, bad) result(status)
    integer(ik), intent(in) :: n_el, nf_max, nf(n_el)
    integer(ik), intent(in) :: ftype(nf_max, n_el), fel1(nf_max, n_el), fel2(nf_max, n_el)
    integer(ik), intent(inout) :: bad
    integer(ik) :: e, f
    logical :: ok
    status = 0
    do e = 1, n_el
      if (nf(e) < 0 .or. nf(e) > nf_max) then
        status = err_feature
        bad = (e - 1) * nf_max
        return
      end if
      do f = 1, nf(e)
        ok = fel1(f, e) >= 0 .and. fel1(f, e) < n_el
        select case (ftype(f, e))
        case (2)
        case (4, 5)
          ok = ok .and. fel2(f, e) >= 0 .and. fel2(f, e) < n_el
        case default
          ok = .false.
        end select
        if (.not. ok) then
          status = err_feature
          bad = (e - 1) * nf_max + f - 1
          return
        end if
      end do
    end do
  end function check_table

  integer(ik) function check_slots(n_pairs, nb_slot, centre_slot, bad) result(status)
    integer(ik), intent(in) :: n_pairs, nb_slot(:), centre_slot(:)
    integer(ik), intent(inout) :: bad
    integer(ik) :: i
    status = 0
    do i = 1, size(nb_slot, kind=ik)
      if (nb_slot(i) < 0 .or. nb_slot(i) >= n_pairs) then
        status = err_slot
        bad = i - 1
        return
      end if
    end do
    do i = 1, size(centre_slot, kind=ik)
      if (centre_slot(i) < 0 .or. centre_slot(i) >= n_pairs) then
        status = err_slot
        bad = size(nb_slot, kind=ik) + i - 1
        return
      end if
    end do
  end function check_slots

  ! ---------------------------------------------------------------- cutoff

  integer(ik) function make_cutoff(kind, rc, gam, cut) result(status)
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: rc, gam
    type(cutoff_t), intent(out) :: cut
    status = 0
    if ((kind /= cut_cosine .and. kind /= cut_polynomial) .or. .not. (rc > 0)) then
      status = err_cutoff
      return
    end if
    cut%kind = kind
    cut%rc = rc
    cut%gam = gam
    cut%igam = -1
    if (gam >= 1 .and. gam <= 64) then
      if (gam == real(nint(gam), dp)) cut%igam = nint(gam)
    end if
  end function make_cutoff

  !> Cosine cutoff 0.5 (cos(pi r / Rc) + 1) = cos(phi)^2, phi = pi r / (2 Rc), for 0 <= r < Rc.
  !> With v = phi - pi/4 in [-pi/4, pi/4): cos(phi) = (cos v - sin v) / sqrt(2) and
  !> sin(2 phi) = cos v^2 - sin v^2, from Taylor series (truncation error below 1e-16);
  !> branch-free, vectorisable and without the cancellation of 1 + cos near Rc.
  pure subroutine cosine_cutoff(r, rc, fc, dfc)
    real(dp), intent(in) :: r, rc
    real(dp), intent(out) :: fc, dfc
    real(dp) :: v, v2, sin_v, cos_v
    v = (0.5_dp * pi) * (r / rc) - 0.25_dp * pi
    v2 = v * v
    sin_v = sin_c(1) + v2 * (sin_c(2) + v2 * (sin_c(3) + v2 * (sin_c(4) + v2 * (sin_c(5) &
            + v2 * (sin_c(6) + v2 * sin_c(7))))))
    cos_v = cos_c(1) + v2 * (cos_c(2) + v2 * (cos_c(3) + v2 * (cos_c(4) + v2 * (cos_c(5) &
            + v2 * (cos_c(6) + v2 * (cos_c(7) + v2 * cos_c(8)))))))
    sin_v = v + v * v2 * sin_v
    cos_v = 1 + v2 * cos_v
    fc = 0.5_dp * (cos_v - sin_v)**2
    dfc = -0.5_dp * pi / rc * (cos_v - sin_v) * (cos_v + sin_v)
  end subroutine cosine_cutoff

  !> Polynomial cutoff 1 + g x^(g+1) - (g+1) x^g, x = r / Rc < 1.
  pure subroutine polynomial_cutoff(cut, r, fc, dfc)
    type(cutoff_t), intent(in) :: cut
    real(dp), intent(in) :: r
    real(dp), intent(out) :: fc, dfc
    real(dp) :: x, xg1, xg
    x = r / cut%rc
    if (cut%igam > 0) then
      xg1 = int_power(x, cut%igam - 1)
    else
      xg1 = x**(cut%gam - 1)
    end if
    xg = xg1 * x
    fc = 1 + cut%gam * xg * x - (cut%gam + 1) * xg
    dfc = cut%gam * (cut%gam + 1) * (xg - xg1) / cut%rc
  end subroutine polynomial_cutoff

  pure real(dp) function int_power(x, n) result(p)
    real(dp), intent(in) :: x
    integer, intent(in) :: n
    integer :: k
    p = 1
    do k = 1, n
      p = p * x
    end do
  end function int_power

  ! ---------------------------------------------------------------- feature groups

  !> Group the features by (centre element, neighbour element) for G2 and by (centre
  !> element, unordered neighbour-element pair) for G4 and G5; copy their parameters.
  integer(ik) function build_groups(ne, nf_max, nf, ftype, fel1, fel2, feta, fzeta, fgamma, foffset, g) &
    result(status)
    integer, intent(in) :: ne, nf_max
    integer(ik), intent(in) :: nf(ne), ftype(nf_max, ne), fel1(nf_max, ne), fel2(nf_max, ne)
    real(dp), intent(in) :: feta(nf_max, ne), fzeta(nf_max, ne), fgamma(nf_max, ne), foffset(nf_max, ne)
    type(groups_t), intent(out) :: g
    integer :: e, f, id, m, n_groups, n_members, stat
    integer, allocatable :: fill(:)

    g%ne = ne
    g%base4 = ne * ne
    g%base5 = ne * ne + ne * ne * ne
    n_groups = ne * ne + 2 * ne * ne * ne
    n_members = max(1, int(sum(nf)))
    status = err_memory
    allocate (g%ptr(n_groups + 1), fill(n_groups), g%col(n_members), g%izeta(n_members), stat=stat)
    if (stat /= 0) return
    allocate (g%eta(n_members), g%offset(n_members), g%zeta(n_members), g%gam(n_members), &
              g%pref(n_members), stat=stat)
    if (stat /= 0) return
    status = 0
    fill = 0
    do e = 1, ne
      do f = 1, int(nf(e))
        id = group_of(g, e, int(ftype(f, e)), int(fel1(f, e)) + 1, int(fel2(f, e)) + 1)
        fill(id) = fill(id) + 1
      end do
    end do
    g%ptr(1) = 1
    do id = 1, n_groups
      g%ptr(id + 1) = g%ptr(id) + fill(id)
    end do
    fill = 0
    do e = 1, ne
      do f = 1, int(nf(e))
        id = group_of(g, e, int(ftype(f, e)), int(fel1(f, e)) + 1, int(fel2(f, e)) + 1)
        m = g%ptr(id) + fill(id)
        fill(id) = fill(id) + 1
        call set_member(g, m, f, feta(f, e), foffset(f, e), fzeta(f, e), fgamma(f, e), ftype(f, e) == 2)
        call sink_member(g, g%ptr(id), m)
      end do
    end do
    status = err_memory
    allocate (g%nu(n_groups), g%upow(n_members), g%uiz(n_members), g%uzeta(n_members), g%ugam(n_members), &
              stat=stat)
    if (stat /= 0) return
    status = 0
    call distinct_powers(g)
  end function build_groups

  !> Move member m down among members lo..m-1 (sorted by eta) to keep lo..m sorted by eta
  !> (stable), so the features of one group sharing eta share its exponentials.
  subroutine sink_member(g, lo, m)
    type(groups_t), intent(inout) :: g
    integer, intent(in) :: lo, m
    integer :: q, col, izeta
    real(dp) :: eta, offset, zeta, gam, pref
    col = g%col(m)
    izeta = g%izeta(m)
    eta = g%eta(m)
    offset = g%offset(m)
    zeta = g%zeta(m)
    gam = g%gam(m)
    pref = g%pref(m)
    q = m
    do while (q > lo)
      if (.not. (g%eta(q - 1) > eta)) exit
      g%col(q) = g%col(q - 1)
      g%izeta(q) = g%izeta(q - 1)
      g%eta(q) = g%eta(q - 1)
      g%offset(q) = g%offset(q - 1)
      g%zeta(q) = g%zeta(q - 1)
      g%gam(q) = g%gam(q - 1)
      g%pref(q) = g%pref(q - 1)
      q = q - 1
    end do
    g%col(q) = col
    g%izeta(q) = izeta
    g%eta(q) = eta
    g%offset(q) = offset
    g%zeta(q) = zeta
    g%gam(q) = gam
    g%pref(q) = pref
  end subroutine sink_member

  !> Copy one feature's parameters into group member m (prefactor 2^(1-zeta), integer zeta).
  subroutine set_member(g, m, f, eta, offset, zeta, gam, radial_feature)
    type(groups_t), intent(inout) :: g
    integer, intent(in) :: m, f
    real(dp), intent(in) :: eta, offset, zeta, gam
    logical, intent(in) :: radial_feature
    g%col(m) = f
    g%eta(m) = eta
    g%offset(m) = offset
    g%zeta(m) = zeta
    g%gam(m) = gam
    g%pref(m) = 0
    g%izeta(m) = 0
    if (radial_feature) return
    g%pref(m) = 2.0_dp**(1 - zeta)
    if (zeta >= 1 .and. zeta <= 64) then
      if (zeta == real(nint(zeta), dp)) g%izeta(m) = nint(zeta)
    end if
  end subroutine set_member

  !> Group id of a feature of centre element e (type 2: neighbour a; 4/5: pair {a, b}).
  pure integer function group_of(g, e, ftype, a, b) result(id)
    type(groups_t), intent(in) :: g
    integer, intent(in) :: e, ftype, a, b
    if (ftype == 2) then
      id = (e - 1) * g%ne + a
    else
      id = ((e - 1) * g%ne + min(a, b) - 1) * g%ne + max(a, b)
      id = id + merge(g%base4, g%base5, ftype == 4)
    end if
  end function group_of

  ! ---------------------------------------------------------------- one centre

  !> Return the largest neighbour count of any centre.
  pure integer function largest_shell(n_atoms, first) result(n_max)
    integer(ik), intent(in) :: n_atoms, first(n_atoms + 1)
    integer(ik) :: i
    n_max = 0
    do i = 1, n_atoms
      n_max = max(n_max, int(first(i + 1) - first(i)))
    end do
  end function largest_shell

  integer(ik) function allocate_shell(n_max, nf_max, ne, deriv, s, p) result(status)
    integer, intent(in) :: n_max, nf_max, ne
    logical, intent(in) :: deriv
    type(shell_t), intent(out) :: s
    type(batch_t), intent(out) :: p
    integer :: n, nd, stat
    n = max(1, n_max) + 3  ! batches are padded to a multiple of 4 neighbours
    nd = merge(n, 1, deriv)
    status = err_memory
    allocate (s%x(n, 3), s%r(n), s%inv_r(n), s%r2(n), s%fc(n), s%dfc(n), s%el(n), s%slot(n), s%entry(n), &
              s%seg(ne + 1), s%d(nd, 3, max(1, nf_max)), s%sd(nd, max(1, nf_max)), stat=stat)
    if (stat /= 0) return
    allocate (p%c(n), p%cjc(n), p%c_k(n), p%c_a(n), p%sr(n), p%fcut(n), p%dij(n), p%dik(n), p%djk(n), &
              p%ex(n), p%exf(n), p%bj(n), p%bjk(n), p%bk(n), p%ecj(n), p%eca(n), p%eck(n), &
              p%a(n), p%a_jj(n), p%a_jk(n), stat=stat)
    if (stat /= 0) return
    status = 0
    s%n = 0
    p%n = 0
  end function allocate_shell

  !> Copy centre entries lo..hi (1-based) into the shell sorted by element (stable), so
  !> entries seg(b) .. seg(b+1)-1 have element b; precompute r, 1/r, fc, dfc.
  integer(ik) function gather_shell(cut, lo, hi, nb_vec, nb_atom, atom_el, nb_slot, slots, deriv, s, bad) &
    result(status)
    type(cutoff_t), intent(in) :: cut
    integer(ik), intent(in) :: lo, hi, nb_atom(:), atom_el(:), nb_slot(:)
    real(dp), intent(in) :: nb_vec(:, :)
    logical, intent(in) :: slots, deriv
    type(shell_t), intent(inout) :: s
    integer(ik), intent(inout) :: bad
    integer(ik) :: q
    integer :: n, b
    status = 0
    s%n = int(hi - lo + 1)
    s%seg = 0
    do q = lo, hi
      b = int(atom_el(nb_atom(q) + 1)) + 1
      s%seg(b + 1) = s%seg(b + 1) + 1
    end do
    s%seg(1) = 1
    do b = 2, size(s%seg)
      s%seg(b) = s%seg(b) + s%seg(b - 1)
    end do
    do q = lo, hi
      b = int(atom_el(nb_atom(q) + 1)) + 1
      n = s%seg(b)
      s%seg(b) = n + 1
      s%el(n) = b
      s%x(n, :) = nb_vec(:, q)
      s%r2(n) = nb_vec(1, q)**2 + nb_vec(2, q)**2 + nb_vec(3, q)**2
      if (.not. (s%r2(n) > 0)) then
        status = err_overlap
        bad = q - 1
        return
      end if
      s%r(n) = sqrt(s%r2(n))
      s%inv_r(n) = 1 / s%r(n)
      if (slots) s%slot(n) = nb_slot(q) + 1
      s%entry(n) = q - 1
    end do
    call shell_cutoffs(cut, s%n, s%r, s%fc, s%dfc)
    do b = size(s%seg), 2, -1
      s%seg(b) = s%seg(b - 1)
    end do
    s%seg(1) = 1
    n = s%n + 1  ! padding read by batches (zero cutoffs: contributes exact zeros)
    s%x(n:n + 2, :) = 0
    s%r(n:n + 2) = 1
    s%inv_r(n:n + 2) = 0
    s%r2(n:n + 2) = 0
    s%fc(n:n + 2) = 0
    s%dfc(n:n + 2) = 0
    if (deriv) then
      s%d(:s%n + 3, :, :) = 0
      s%sd(:s%n + 3, :) = 0
    end if
  end function gather_shell

  !> Add the shell's derivatives to the blocks: neighbour entry n to its block, minus all of
  !> them to the centre's own block (every term depends on positions only through R_n - R_i).
  subroutine scatter(s, cslot, derivs)
    type(shell_t), intent(in) :: s
    integer(ik), intent(in) :: cslot
    real(dp), intent(inout) :: derivs(:, :, :)
    integer :: n, c, f
    integer(ik) :: slot
    real(dp) :: v
    do n = 1, s%n
      slot = s%slot(n)
      do c = 1, 3
        do f = 1, size(derivs, 1)
          v = s%d(n, c, f) + s%sd(n, f) * s%x(n, c)
          derivs(f, c, slot) = derivs(f, c, slot) + v
          derivs(f, c, cslot) = derivs(f, c, cslot) - v
        end do
      end do
    end do
  end subroutine scatter

  !> Add every G2 term of one centre: exp(-eta (r - Rs)^2 / Rc^2) fc(r).
  subroutine radial(e, s, g, rc, deriv, val)
    integer, intent(in) :: e
    type(shell_t), intent(inout) :: s
    type(groups_t), intent(in) :: g
    real(dp), intent(in) :: rc
    logical, intent(in) :: deriv
    real(dp), intent(inout) :: val(:)
    integer :: n, id, m, f, b, lo, hi
    real(dp) :: inv_rc2, d, eta, acc, ex(s%n)
    inv_rc2 = 1 / rc**2
    do b = 1, g%ne  ! the shell is sorted by element: each function's neighbours are contiguous
      lo = s%seg(b)
      hi = s%seg(b + 1) - 1
      id = (e - 1) * g%ne + b
      if (hi < lo) cycle
      do m = g%ptr(id), g%ptr(id + 1) - 1
        f = g%col(m)
        eta = g%eta(m)
        do n = lo, hi  ! vectorised exponentials
          d = s%r(n) - g%offset(m)
          ex(n) = exp(-eta * d * d * inv_rc2)
        end do
        acc = val(f)
        do n = lo, hi  ! summed in neighbour order
          acc = acc + ex(n) * s%fc(n)
        end do
        val(f) = acc
        if (.not. deriv) cycle
        do n = lo, hi
          d = s%r(n) - g%offset(m)
          s%sd(n, f) = s%sd(n, f) + ex(n) * (s%dfc(n) - 2 * eta * d * inv_rc2 * s%fc(n)) * s%inv_r(n)
        end do
      end do
    end do
  end subroutine radial

  !> Add every G4 and G5 term of one centre. For each neighbour j and each element b of
  !> the neighbours k > j (the shell is sorted by element, so they are contiguous), the
  !> pairs (j, k) share one feature group: their shared factors are computed into the
  !> batch once, then each feature loops over the batch.
  subroutine angular(e, s, g, cut, deriv, val, p)
    integer, intent(in) :: e
    type(shell_t), intent(inout) :: s
    type(groups_t), intent(in) :: g
    type(cutoff_t), intent(in) :: cut
    logical, intent(in) :: deriv
    real(dp), intent(inout) :: val(:)
    type(batch_t), intent(inout) :: p
    integer :: j, b, k0, k1, pair, lo, hi
    logical :: g4
    do j = 1, s%n - 1
      if (s%fc(j) == 0) cycle
      do b = 1, g%ne
        k0 = max(j + 1, s%seg(b))
        k1 = s%seg(b + 1) - 1
        if (k1 < k0) cycle
        pair = ((e - 1) * g%ne + min(s%el(j), b) - 1) * g%ne + max(s%el(j), b)
        do lo = 4, 5
          g4 = lo == 4
          hi = merge(g%base4, g%base5, g4) + pair
          if (g%ptr(hi + 1) == g%ptr(hi)) cycle
          call collect(g4, j, k0, k1 - k0 + 1, s, cut, p)
          call add_batch(g4, g%ptr(hi), g%ptr(hi + 1) - 1, j, k0, s, g, cut%rc**2, deriv, val, p)
        end do
      end do
    end do
  end subroutine angular

  !> Fill the batch with the shared factors of the pairs (j, k), k = k0 .. k0+nq-1:
  !> cos(theta), cutoff product and its scaled derivatives, sum of squared distances,
  !> coefficients of d cos. For G4 the cutoff of r_jk enters; pairs with r_jk >= Rc keep
  !> a zero cutoff product (masked, not removed, so the loops stay contiguous: cheaper
  !> than compacting or trimming the range, measured). The batch is padded to a multiple
  !> of 4 pairs with zero cutoff products (the shell has 3 spare entries), so its loops
  !> run in whole blocks of 4.
  subroutine collect(g4, j, k0, nq, s, cut, p)
    logical, intent(in) :: g4
    integer, intent(in) :: j, k0, nq
    type(shell_t), intent(in) :: s
    type(cutoff_t), intent(in) :: cut
    type(batch_t), intent(inout) :: p
    integer :: k, q, nq4
    real(dp) :: rc2, xj1, xj2, xj3, fjk, dfjk, keep, cq, fcut, v, v2, sin_v, cos_v
    rc2 = cut%rc**2
    xj1 = s%x(j, 1)
    xj2 = s%x(j, 2)
    xj3 = s%x(j, 3)
    nq4 = 4 * ((nq + 3) / 4)
    p%n = nq4
    if (g4) then  ! r_jk^2 into a, cutoff of r_jk into a_jj, its derivative / r_jk into a_jk
      do q = 1, nq4
        k = k0 + q - 1
        p%a(q) = (s%x(k, 1) - xj1)**2 + (s%x(k, 2) - xj2)**2 + (s%x(k, 3) - xj3)**2
        p%djk(q) = sqrt(max(p%a(q), tiny(1.0_dp)))
      end do
      if (cut%kind == cut_cosine) then
        do q = 1, nq4  ! cosine_cutoff written out, so the loop vectorises
          v = (0.5_dp * pi) * (p%djk(q) / cut%rc) - 0.25_dp * pi
          v2 = v * v
          sin_v = v + v * v2 * (sin_c(1) + v2 * (sin_c(2) + v2 * (sin_c(3) + v2 * (sin_c(4) &
                  + v2 * (sin_c(5) + v2 * (sin_c(6) + v2 * sin_c(7)))))))
          cos_v = 1 + v2 * (cos_c(1) + v2 * (cos_c(2) + v2 * (cos_c(3) + v2 * (cos_c(4) &
                  + v2 * (cos_c(5) + v2 * (cos_c(6) + v2 * (cos_c(7) + v2 * cos_c(8))))))))
          p%a_jj(q) = 0.5_dp * (cos_v - sin_v)**2
          p%a_jk(q) = -0.5_dp * pi / cut%rc * (cos_v - sin_v) * (cos_v + sin_v)
        end do
      else
        do q = 1, nq4
          call polynomial_cutoff(cut, p%djk(q), fjk, dfjk)
          p%a_jj(q) = fjk
          p%a_jk(q) = dfjk
        end do
      end if
      do q = 1, nq4
        keep = merge(1.0_dp, 0.0_dp, p%a(q) < rc2 .and. q <= nq)
        p%a_jj(q) = p%a_jj(q) * keep
        p%a_jk(q) = p%a_jk(q) * keep / p%djk(q)
      end do
    else
      do q = 1, nq4
        p%a_jj(q) = merge(1.0_dp, 0.0_dp, q <= nq)
        p%a_jk(q) = 0
        p%a(q) = 0
      end do
    end if
    do q = 1, nq4
      k = k0 + q - 1
      cq = (xj1 * s%x(k, 1) + xj2 * s%x(k, 2) + xj3 * s%x(k, 3)) * (s%inv_r(j) * s%inv_r(k))
      cq = max(-1.0_dp, min(1.0_dp, cq))  ! collinear images: keep 1 + gamma cos >= 0
      p%c(q) = cq
      p%cjc(q) = -cq * s%inv_r(j)**2
      p%c_k(q) = -cq * s%inv_r(k)**2
      p%c_a(q) = s%inv_r(j) * s%inv_r(k)
      p%sr(q) = s%r2(j) + s%r2(k) + p%a(q)
      fjk = p%a_jj(q)
      fcut = s%fc(j) * s%fc(k)
      p%djk(q) = fcut * p%a_jk(q)
      p%fcut(q) = fcut * fjk
      p%dij(q) = s%dfc(j) * s%fc(k) * s%inv_r(j) * fjk
      p%dik(q) = s%fc(j) * s%dfc(k) * s%inv_r(k) * fjk
    end do
  end subroutine collect

  !> Per-eta factors of the batch: ex = exp(-eta sum r^2 / Rc^2), ex times the cutoffs
  !> and the parts of the gradient coefficients (see member_terms) common to all zeta, gamma.
  subroutine eta_factors(g4, eta, rc2, deriv, p)
    logical, intent(in) :: g4, deriv
    real(dp), intent(in) :: eta, rc2
    type(batch_t), intent(inout) :: p
    integer :: q
    real(dp) :: h, h_jj, h_jk, hf
    h = -2 * eta / rc2
    h_jj = merge(2, 1, g4) * h
    h_jk = merge(-1, 0, g4) * h
    do q = 1, p%n
      p%ex(q) = exp(-eta * p%sr(q) / rc2)
      p%exf(q) = p%ex(q) * p%fcut(q)
    end do
    if (.not. deriv) return
    do q = 1, p%n
      hf = p%fcut(q)
      p%bj(q) = p%ex(q) * (h_jj * hf + p%dij(q) + p%djk(q))
      p%bjk(q) = p%ex(q) * (h_jk * hf - p%djk(q))
      p%bk(q) = p%ex(q) * (h_jj * hf + p%dik(q) + p%djk(q))
      p%ecj(q) = p%exf(q) * p%cjc(q)
      p%eca(q) = p%exf(q) * p%c_a(q)
      p%eck(q) = p%exf(q) * p%c_k(q)
    end do
  end subroutine eta_factors

  !> Add the batch's terms to group members lo..hi (sorted by eta): 2^(1-zeta)
  !> (1 + gamma cos)^zeta exp(-eta sum r^2 / Rc^2) times the cutoffs, sharing the
  !> exponentials between members of one eta.
  subroutine add_batch(g4, lo, hi, j, k0, s, g, rc2, deriv, val, p)
    logical, intent(in) :: g4
    integer, intent(in) :: lo, hi, j, k0
    type(shell_t), intent(inout) :: s
    type(groups_t), intent(in) :: g
    real(dp), intent(in) :: rc2
    logical, intent(in) :: deriv
    real(dp), intent(inout) :: val(:)
    type(batch_t), intent(inout) :: p
    integer :: m, q, q0, l, nq
    real(dp) :: eta_last, w, acc(4)
    eta_last = -huge(1.0_dp)
    nq = p%n
    m = lo
    do while (m <= hi)
      if (g%eta(m) /= eta_last) then
        eta_last = g%eta(m)
        call eta_factors(g4, eta_last, rc2, deriv, p)
      end if
      call angular_powers(nq, g%izeta(m), g%zeta(m), g%gam(m), p%c, p%a_jk)
      if (.not. deriv) then
        acc = 0
        do q0 = 0, nq - 4, 4  ! the same operations as with derivatives: the same values
          do l = 1, 4
            q = q0 + l
            w = g%pref(m) * p%a_jk(q) * (1 + g%gam(m) * p%c(q))
            acc(l) = acc(l) + w * p%exf(q)
          end do
        end do
        val(g%col(m)) = val(g%col(m)) + ((acc(1) + acc(2)) + (acc(3) + acc(4)))
        m = m + 1
        cycle
      end if
      call member_terms(m, j, k0, s, g, val, p)
      m = m + 1
    end do
  end subroutine add_batch

  !> Values and derivatives of member m over the batch (tz1 in a_jk). The gradient with
  !> respect to R_ij = R_j - R_i is a_jj R_ij + a_jk R_ik, with respect to R_ik
  !> a_jk R_ij + a_kk R_ik; the terms along R_ij (R_ik) are summed as scalars in sd.
  subroutine member_terms(m, j, k0, s, g, val, p)
    integer, intent(in) :: m, j, k0
    type(shell_t), intent(inout) :: s
    type(groups_t), intent(in) :: g
    real(dp), intent(inout) :: val(:)
    type(batch_t), intent(in) :: p
    integer :: f, q, q0, l, k
    real(dp) :: pref, gam, zg, tz1, w, qq, a_jj, a_jk, xj1, xj2, xj3, sums(5), acc(4, 5)
    f = g%col(m)
    pref = g%pref(m)
    gam = g%gam(m)
    zg = pref * g%zeta(m) * gam
    xj1 = s%x(j, 1)
    xj2 = s%x(j, 2)
    xj3 = s%x(j, 3)
    if (g%zeta(m) < 1 .and. s%bad_j < 0) then  ! (1 + gamma cos)^(zeta - 1) unbounded at 0
      do q = 1, p%n
        if (p%fcut(q) > 0 .and. 1 + gam * p%c(q) <= singular_base) then
          s%bad_j = s%entry(j)
          s%bad_k = s%entry(k0 + q - 1)
          exit
        end if
      end do
    end if
    acc = 0
    do q0 = 0, p%n - 4, 4  ! blocks of 4 pairs, 4 partial sums: vectorises without reassociation
      do l = 1, 4
        q = q0 + l
        k = k0 + q - 1
        tz1 = p%a_jk(q)
        w = pref * tz1 * (1 + gam * p%c(q))
        qq = zg * tz1
        a_jj = qq * p%ecj(q) + w * p%bj(q)
        a_jk = qq * p%eca(q) + w * p%bjk(q)
        s%sd(k, f) = s%sd(k, f) + (qq * p%eck(q) + w * p%bk(q))
        s%d(k, 1, f) = s%d(k, 1, f) + a_jk * xj1
        s%d(k, 2, f) = s%d(k, 2, f) + a_jk * xj2
        s%d(k, 3, f) = s%d(k, 3, f) + a_jk * xj3
        acc(l, 1) = acc(l, 1) + w * p%exf(q)
        acc(l, 2) = acc(l, 2) + a_jj
        acc(l, 3) = acc(l, 3) + a_jk * s%x(k, 1)
        acc(l, 4) = acc(l, 4) + a_jk * s%x(k, 2)
        acc(l, 5) = acc(l, 5) + a_jk * s%x(k, 3)
      end do
    end do
    sums = (acc(1, :) + acc(2, :)) + (acc(3, :) + acc(4, :))
    val(f) = val(f) + ((acc(1, 1) + acc(2, 1)) + (acc(3, 1) + acc(4, 1)))
    s%sd(j, f) = s%sd(j, f) + sums(2)
    s%d(j, :, f) = s%d(j, :, f) + sums(3:5)
  end subroutine member_terms

  !> tz1(q) = (1 + gamma c(q))^(zeta - 1), by multiplication for integer zeta (iz > 0).
  subroutine angular_powers(n, iz, zeta, gam, c, tz1)
    integer, intent(in) :: n, iz
    real(dp), intent(in) :: zeta, gam, c(n)
    real(dp), intent(out) :: tz1(n)
    integer :: q
    select case (iz)
    case (1)
      tz1 = 1
    case (2)
      tz1 = 1 + gam * c
    case (3)
      tz1 = (1 + gam * c)**2
    case (4)
      do q = 1, n
        tz1(q) = (1 + gam * c(q)) * (1 + gam * c(q)) * (1 + gam * c(q))
      end do
    case (5:)
      do q = 1, n
        tz1(q) = int_power(1 + gam * c(q), iz - 1)
      end do
    case default  ! 1 + gamma cos >= tiny: a finite power even for zeta < 1 (masked pairs stay 0)
      tz1 = max(1 + gam * c, tiny(1.0_dp))**(zeta - 1)
    end select
  end subroutine angular_powers

end module amp_gaussian_kernels
