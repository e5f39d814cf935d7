! Gaussian symmetry functions (Behler and Parrinello, PRL 98, 146401 (2007); Behler,
! J. Chem. Phys. 134, 074106 (2011)) in the conventions of Amp: G2, G4 and G5 with the
! Cosine or Polynomial cutoff, their values and their derivatives with respect to every
! atom position within the cutoff of each centre.
!
! Called through ctypes from amp_plugins/descriptors/_gaussian_fortran.py. Every routine
! is bind(C); no Fortran I/O, no runtime library calls. Arrays are C-ordered on the
! Python side, so a Python (n, m) array is an (m, n) array here. All indices that come
! in are 0-based and are checked before use; a bad input returns an error code (see
! the err_* constants) and the offending 0-based index in bad_index.
module amp_gaussian_kernels
  use, intrinsic :: iso_c_binding, only: c_int64_t, c_double
  implicit none
  private
  public :: amp_gaussian_abi_version, amp_gaussian_fingerprints

  integer, parameter :: dp = c_double, ik = c_int64_t
  real(dp), parameter :: pi = 3.14159265358979323846264338327950288_dp
  integer(ik), parameter :: abi_version = 1

  integer(ik), parameter :: err_shape = 1      ! a size argument is negative or inconsistent
  integer(ik), parameter :: err_element = 2    ! an atom's element code is out of range
  integer(ik), parameter :: err_offsets = 3    ! neighbour offsets are not 0 .. n_entries, ascending
  integer(ik), parameter :: err_neighbour = 4  ! a neighbour atom index is out of range
  integer(ik), parameter :: err_feature = 5    ! a feature type or element code is invalid
  integer(ik), parameter :: err_cutoff = 6     ! unknown cutoff kind or Rc <= 0
  integer(ik), parameter :: err_slot = 7       ! a derivative block index is out of range
  integer(ik), parameter :: err_overlap = 8    ! a neighbour at zero distance
  integer(ik), parameter :: err_memory = 9     ! scratch memory could not be allocated

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
  type :: groups_t
    integer :: ne, base4, base5
    integer, allocatable :: ptr(:), col(:), izeta(:)
    real(dp), allocatable :: eta(:), offset(:), zeta(:), gam(:), pref(:)
  end type groups_t

  ! One centre's neighbours (gathered from the list): vectors, 1/r, r^2, cutoff values,
  ! element and derivative block; d(:, :, n) accumulates d values / d (R_n - R_centre).
  type :: shell_t
    integer :: n
    real(dp), allocatable :: x(:, :), r(:), inv_r(:), r2(:), fc(:), dfc(:), d(:, :, :)
    integer, allocatable :: el(:), seg(:)
    integer(ik), allocatable :: slot(:)
  end type shell_t

  ! Neighbour pairs (j, k) of one centre sharing j and the element of k, with their
  ! shared factors (see collect) and per-feature terms (see add_batch).
  type :: batch_t
    integer :: n
    integer, allocatable :: k(:)
    real(dp), allocatable :: rjk(:), c(:), c_k(:), c_a(:), sr(:), fcut(:), dij(:), dik(:), djk(:)
    real(dp), allocatable :: ex(:), a(:), a_jj(:), a_jk(:), a_kk(:)
  end type batch_t

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
  !>   nf(n_el), ftype/fel1/fel2/feta/fzeta/fgamma/foffset(nf_max, n_el): feature table; type
  !>     2, 4 or 5; element codes (fel2 unused for G2); eta, zeta, gamma, offset (Angstrom).
  !>   nb_slot(n_entries), centre_slot(n_atoms): derivative block (0-based) of each neighbour
  !>     entry and of each centre itself; read only when want_deriv /= 0.
  !>   values(nf_max, n_atoms), derivs(nf_max, 3, n_pairs): outputs (overwritten).
  !> Returns 0, or an err_* code with the 0-based offending index in bad_index.
  function amp_gaussian_fingerprints(n_atoms, n_el, atom_el, n_entries, first, nb_atom, nb_vec, &
                                     cut_kind, rc, cut_gamma, nf_max, nf, ftype, fel1, fel2, &
                                     feta, fzeta, fgamma, foffset, want_deriv, n_pairs, nb_slot, &
                                     centre_slot, values, derivs, bad_index) &
    result(status) bind(C, name="amp_gaussian_fingerprints")
    integer(ik), value :: n_atoms, n_el, n_entries, cut_kind, nf_max, want_deriv, n_pairs
    real(dp), value :: rc, cut_gamma
    integer(ik), intent(in) :: atom_el(n_atoms), first(n_atoms + 1), nb_atom(n_entries)
    real(dp), intent(in) :: nb_vec(3, n_entries)
    integer(ik), intent(in) :: nf(n_el), ftype(nf_max, n_el), fel1(nf_max, n_el), fel2(nf_max, n_el)
    real(dp), intent(in) :: feta(nf_max, n_el), fzeta(nf_max, n_el), fgamma(nf_max, n_el)
    real(dp), intent(in) :: foffset(nf_max, n_el)
    integer(ik), intent(in) :: nb_slot(n_entries), centre_slot(n_atoms)
    real(dp), intent(out) :: values(nf_max, n_atoms), derivs(nf_max, 3, n_pairs)
    integer(ik), intent(out) :: bad_index
    integer(ik) :: status
    type(cutoff_t) :: cut
    type(groups_t) :: groups
    type(shell_t) :: shell
    type(batch_t) :: batch
    logical :: deriv
    integer(ik) :: i

    bad_index = -1
    deriv = want_deriv /= 0
    status = check_sizes(n_atoms, n_el, n_entries, nf_max, n_pairs, first, bad_index)
    if (status == 0) status = check_atoms(n_atoms, n_el, n_entries, atom_el, nb_atom, bad_index)
    if (status == 0) status = check_table(n_el, nf_max, nf, ftype, fel1, fel2, bad_index)
    if (status == 0 .and. deriv) status = check_slots(n_pairs, nb_slot, centre_slot, bad_index)
    if (status == 0) status = make_cutoff(cut_kind, rc, cut_gamma, cut)
    if (status /= 0) return

    status = build_groups(int(n_el), int(nf_max), nf, ftype, fel1, fel2, feta, fzeta, fgamma, foffset, groups)
    if (status == 0) status = allocate_shell(largest_shell(n_atoms, first), int(nf_max), int(n_el), &
                                             deriv, shell, batch)
    if (status /= 0) return
    values = 0
    if (deriv) derivs = 0
    do i = 1, n_atoms
      status = gather_shell(cut, first(i) + 1, first(i + 1), nb_vec, nb_atom, atom_el, nb_slot, &
                            deriv, shell, bad_index)
      if (status /= 0) return
      call radial(int(atom_el(i)) + 1, shell, groups, cut%rc, deriv, values(:, i))
      call angular(int(atom_el(i)) + 1, shell, groups, cut, deriv, values(:, i), batch)
      if (deriv) call scatter(shell, centre_slot(i) + 1, derivs)
    end do
  end function amp_gaussian_fingerprints

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

  !> Cutoff value fc(r) and its derivative dfc/dr (1/Angstrom); both 0 for r >= Rc.
  pure subroutine cutoff_value(cut, r, fc, dfc)
    type(cutoff_t), intent(in) :: cut
    real(dp), intent(in) :: r
    real(dp), intent(out) :: fc, dfc
    fc = 0
    dfc = 0
    if (r >= cut%rc) return
    if (cut%kind == cut_cosine) then
      call cosine_cutoff(r, cut%rc, fc, dfc)
    else
      call polynomial_cutoff(cut, r, fc, dfc)
    end if
  end subroutine cutoff_value

  !> Cosine cutoff 0.5 (cos(pi r / Rc) + 1) = cos(phi)^2, phi = pi r / (2 Rc), for 0 <= r < Rc.
  !> With v = phi - pi/4 in [-pi/4, pi/4): cos(phi) = (cos v - sin v) / sqrt(2) and
  !> sin(2 phi) = cos v^2 - sin v^2, from Taylor series (truncation error below 1e-16);
  !> branch-free, vectorisable and without the cancellation of 1 + cos near Rc.
  pure subroutine cosine_cutoff(r, rc, fc, dfc)
    real(dp), intent(in) :: r, rc
    real(dp), intent(out) :: fc, dfc
    real(dp) :: v, v2, sin_v, cos_v
    integer :: n
    v = (0.5_dp * pi) * (r / rc) - 0.25_dp * pi
    v2 = v * v
    sin_v = sin_c(size(sin_c))
    cos_v = cos_c(size(cos_c))
    do n = size(sin_c) - 1, 1, -1
      sin_v = sin_c(n) + v2 * sin_v
    end do
    do n = size(cos_c) - 1, 1, -1
      cos_v = cos_c(n) + v2 * cos_v
    end do
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
      end do
    end do
  end function build_groups

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
    integer :: n, stat
    n = max(1, n_max)
    status = err_memory
    allocate (s%x(3, n), s%r(n), s%inv_r(n), s%r2(n), s%fc(n), s%dfc(n), s%el(n), s%slot(n), &
              s%seg(ne + 1), s%d(max(1, nf_max), 3, merge(n, 1, deriv)), stat=stat)
    if (stat /= 0) return
    allocate (p%k(n + 1), p%rjk(n + 1), p%c(n), p%c_k(n), p%c_a(n), p%sr(n), p%fcut(n), p%dij(n), p%dik(n), &
              p%djk(n), p%ex(n), p%a(n), p%a_jj(n), p%a_jk(n), p%a_kk(n), stat=stat)
    if (stat /= 0) return
    status = 0
    s%n = 0
    p%n = 0
  end function allocate_shell

  !> Copy centre entries lo..hi (1-based) into the shell sorted by element (stable), so
  !> entries seg(b) .. seg(b+1)-1 have element b; precompute r, 1/r, fc, dfc.
  integer(ik) function gather_shell(cut, lo, hi, nb_vec, nb_atom, atom_el, nb_slot, deriv, s, bad) &
    result(status)
    type(cutoff_t), intent(in) :: cut
    integer(ik), intent(in) :: lo, hi, nb_atom(:), atom_el(:), nb_slot(:)
    real(dp), intent(in) :: nb_vec(:, :)
    logical, intent(in) :: deriv
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
      s%x(:, n) = nb_vec(:, q)
      s%r2(n) = s%x(1, n)**2 + s%x(2, n)**2 + s%x(3, n)**2
      if (.not. (s%r2(n) > 0)) then
        status = err_overlap
        bad = q - 1
        return
      end if
      s%r(n) = sqrt(s%r2(n))
      s%inv_r(n) = 1 / s%r(n)
      call cutoff_value(cut, s%r(n), s%fc(n), s%dfc(n))
      if (deriv) s%slot(n) = nb_slot(q) + 1
    end do
    do b = size(s%seg), 2, -1
      s%seg(b) = s%seg(b - 1)
    end do
    s%seg(1) = 1
    if (deriv) s%d(:, :, :s%n) = 0
  end function gather_shell

  !> Add the shell's derivatives to the blocks: neighbour entry n to its block, minus all of
  !> them to the centre's own block (every term depends on positions only through R_n - R_i).
  subroutine scatter(s, cslot, derivs)
    type(shell_t), intent(in) :: s
    integer(ik), intent(in) :: cslot
    real(dp), intent(inout) :: derivs(:, :, :)
    integer :: n
    do n = 1, s%n
      derivs(:, :, s%slot(n)) = derivs(:, :, s%slot(n)) + s%d(:, :, n)
      derivs(:, :, cslot) = derivs(:, :, cslot) - s%d(:, :, n)
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
    integer :: n, id, m, f
    real(dp) :: inv_rc2, d, ex, dgdr
    inv_rc2 = 1 / rc**2
    do n = 1, s%n
      if (s%fc(n) == 0 .and. s%dfc(n) == 0) cycle
      id = (e - 1) * g%ne + s%el(n)
      do m = g%ptr(id), g%ptr(id + 1) - 1
        f = g%col(m)
        d = s%r(n) - g%offset(m)
        ex = exp(-g%eta(m) * d * d * inv_rc2)
        val(f) = val(f) + ex * s%fc(n)
        if (.not. deriv) cycle
        dgdr = ex * (s%dfc(n) - 2 * g%eta(m) * d * inv_rc2 * s%fc(n))
        s%d(f, :, n) = s%d(f, :, n) + (dgdr * s%inv_r(n)) * s%x(:, n)
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
          call collect(g4, j, k0, k1, s, cut, p)
          if (p%n > 0) call add_batch(g4, g%ptr(hi), g%ptr(hi + 1) - 1, j, s, g, cut%rc**2, deriv, val, p)
        end do
      end do
    end do
  end subroutine angular

  !> Fill the batch with the pairs (j, k), k0 <= k <= k1, that contribute (for G4 only those
  !> with r_jk < Rc) and their shared factors: cos(theta), cutoff product and its scaled
  !> derivatives, sum of squared distances, coefficients of d cos.
  subroutine collect(g4, j, k0, k1, s, cut, p)
    logical, intent(in) :: g4
    integer, intent(in) :: j, k0, k1
    type(shell_t), intent(in) :: s
    type(cutoff_t), intent(in) :: cut
    type(batch_t), intent(inout) :: p
    integer :: k, q
    real(dp) :: rc2, xjk(3), rjk2, fjk, dfjk
    rc2 = cut%rc**2
    q = 1
    do k = k0, k1  ! branch-free compaction: the r_jk test is unpredictable
      xjk = s%x(:, k) - s%x(:, j)
      rjk2 = xjk(1)**2 + xjk(2)**2 + xjk(3)**2
      p%k(q) = k
      p%rjk(q) = rjk2
      q = q + merge(1, 0, s%fc(k) /= 0 .and. (rjk2 < rc2 .or. .not. g4))
    end do
    p%n = q - 1
    do q = 1, p%n
      k = p%k(q)
      p%c(q) = (s%x(1, j) * s%x(1, k) + s%x(2, j) * s%x(2, k) + s%x(3, j) * s%x(3, k)) &
               * s%inv_r(j) * s%inv_r(k)
      p%c(q) = max(-1.0_dp, min(1.0_dp, p%c(q)))  ! collinear images: keep 1 + gamma cos >= 0
      p%c_k(q) = -p%c(q) * s%inv_r(k)**2
      p%c_a(q) = s%inv_r(j) * s%inv_r(k)
      p%sr(q) = s%r2(j) + s%r2(k)
      p%fcut(q) = s%fc(j) * s%fc(k)
      p%dij(q) = s%dfc(j) * s%fc(k) * s%inv_r(j)
      p%dik(q) = s%fc(j) * s%dfc(k) * s%inv_r(k)
      p%djk(q) = 0
    end do
    if (.not. g4) return
    do q = 1, p%n
      p%sr(q) = p%sr(q) + p%rjk(q)
      p%rjk(q) = sqrt(p%rjk(q))
      if (cut%kind == cut_cosine) then
        call cosine_cutoff(p%rjk(q), cut%rc, fjk, dfjk)
      else
        call polynomial_cutoff(cut, p%rjk(q), fjk, dfjk)
      end if
      p%djk(q) = p%fcut(q) * dfjk / p%rjk(q)
      p%fcut(q) = p%fcut(q) * fjk
      p%dij(q) = p%dij(q) * fjk
      p%dik(q) = p%dik(q) * fjk
    end do
  end subroutine collect

  !> Add the batch's terms to group members lo..hi (2^(1-zeta) (1 + gamma cos)^zeta
  !> exp(-eta sum r^2 / Rc^2) times the cutoffs). The gradient with respect to
  !> R_ij = R_j - R_i is a_jj R_ij + a_jk R_ik, with respect to R_ik a_jk R_ij + a_kk R_ik.
  subroutine add_batch(g4, lo, hi, j, s, g, rc2, deriv, val, p)
    logical, intent(in) :: g4
    integer, intent(in) :: lo, hi, j
    type(shell_t), intent(inout) :: s
    type(groups_t), intent(in) :: g
    real(dp), intent(in) :: rc2
    logical, intent(in) :: deriv
    real(dp), intent(inout) :: val(:)
    type(batch_t), intent(inout) :: p
    integer :: m, f, q, k
    real(dp) :: eta_last, h_jj, h_jk, c_j, pref, zeta, gam, h, t, tz1, w, qq, ah, sum_a, sum_jj, cross(3)
    h_jj = merge(2, 1, g4)
    h_jk = merge(-1, 0, g4)
    eta_last = -huge(1.0_dp)
    c_j = -s%inv_r(j)**2
    do m = lo, hi
      f = g%col(m)
      if (g%eta(m) /= eta_last) then
        eta_last = g%eta(m)
        p%ex(:p%n) = exp(-eta_last * p%sr(:p%n) / rc2)
      end if
      pref = g%pref(m)
      zeta = g%zeta(m)
      gam = g%gam(m)
      h = -2 * g%eta(m) / rc2
      do q = 1, p%n
        t = 1 + gam * p%c(q)
        if (g%izeta(m) > 0) then
          tz1 = int_power(t, g%izeta(m) - 1)
        else
          tz1 = t**(zeta - 1)
        end if
        w = pref * tz1 * t * p%ex(q)
        p%a(q) = w * p%fcut(q)
        if (.not. deriv) cycle
        qq = pref * zeta * gam * tz1 * p%ex(q) * p%fcut(q)
        ah = h * p%a(q)
        p%a_jj(q) = qq * c_j * p%c(q) + h_jj * ah + w * (p%dij(q) + p%djk(q))
        p%a_jk(q) = qq * p%c_a(q) + h_jk * ah - w * p%djk(q)
        p%a_kk(q) = qq * p%c_k(q) + h_jj * ah + w * (p%dik(q) + p%djk(q))
      end do
      sum_a = 0
      do q = 1, p%n
        sum_a = sum_a + p%a(q)
      end do
      val(f) = val(f) + sum_a
      if (.not. deriv) cycle
      sum_jj = 0
      cross = 0
      do q = 1, p%n
        k = p%k(q)
        sum_jj = sum_jj + p%a_jj(q)
        cross = cross + p%a_jk(q) * s%x(:, k)
        s%d(f, :, k) = s%d(f, :, k) + p%a_jk(q) * s%x(:, j) + p%a_kk(q) * s%x(:, k)
      end do
      s%d(f, :, j) = s%d(f, :, j) + sum_jj * s%x(:, j) + cross
    end do
  end subroutine add_batch

end module amp_gaussian_kernels
