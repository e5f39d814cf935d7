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

  ! Feature groups: the columns of a centre element's features that one neighbour
  ! (radial) or one unordered neighbour pair (angular) contributes to, in CSR form.
  type :: groups_t
    integer :: ne, base4, base5
    integer, allocatable :: ptr(:), col(:), izeta(:, :)
    real(dp), allocatable :: pref(:, :)
  end type groups_t

  ! One centre's neighbours (gathered from the list): vectors, 1/r, r^2, cutoff values.
  type :: shell_t
    integer :: n
    real(dp), allocatable :: x(:, :), r(:), inv_r(:), r2(:), fc(:), dfc(:)
    integer, allocatable :: el(:)
    integer(ik), allocatable :: slot(:)
  end type shell_t

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

    status = build_groups(int(n_el), int(nf_max), nf, ftype, fel1, fel2, fzeta, groups)
    if (status == 0) status = allocate_shell(largest_shell(n_atoms, first), shell)
    if (status /= 0) return
    values = 0
    if (deriv) derivs = 0
    do i = 1, n_atoms
      status = gather_shell(cut, first(i) + 1, first(i + 1), nb_vec, nb_atom, atom_el, nb_slot, &
                            deriv, shell, bad_index)
      if (status /= 0) return
      call radial(int(atom_el(i)) + 1, shell, groups, cut%rc, feta, foffset, deriv, &
                  centre_slot(i) + 1, values(:, i), derivs)
      call angular(int(atom_el(i)) + 1, shell, groups, cut, feta, fzeta, fgamma, deriv, &
                   centre_slot(i) + 1, values(:, i), derivs)
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
    real(dp) :: x, xg1, xg
    fc = 0
    dfc = 0
    if (r >= cut%rc) return
    x = r / cut%rc
    if (cut%kind == cut_cosine) then
      fc = 0.5_dp * (cos(pi * x) + 1)
      dfc = -0.5_dp * pi / cut%rc * sin(pi * x)
    else
      if (cut%igam > 0) then
        xg1 = int_power(x, cut%igam - 1)
      else
        xg1 = x**(cut%gam - 1)
      end if
      xg = xg1 * x
      fc = 1 + cut%gam * xg * x - (cut%gam + 1) * xg
      dfc = cut%gam * (cut%gam + 1) * (xg - xg1) / cut%rc
    end if
  end subroutine cutoff_value

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

  !> Group feature columns by (centre element, neighbour element) for G2 and by
  !> (centre element, unordered neighbour-element pair) for G4 and G5.
  integer(ik) function build_groups(ne, nf_max, nf, ftype, fel1, fel2, fzeta, g) result(status)
    integer, intent(in) :: ne, nf_max
    integer(ik), intent(in) :: nf(ne), ftype(nf_max, ne), fel1(nf_max, ne), fel2(nf_max, ne)
    real(dp), intent(in) :: fzeta(nf_max, ne)
    type(groups_t), intent(out) :: g
    integer :: e, f, id, pass, n_groups, stat
    integer, allocatable :: fill(:)

    g%ne = ne
    g%base4 = ne * ne
    g%base5 = ne * ne + ne * ne * ne
    n_groups = ne * ne + 2 * ne * ne * ne
    status = err_memory
    allocate (g%ptr(n_groups + 1), fill(n_groups), g%col(max(1, sum(int(nf)))), stat=stat)
    if (stat /= 0) return
    allocate (g%izeta(max(1, nf_max), ne), g%pref(max(1, nf_max), ne), stat=stat)
    if (stat /= 0) return
    status = 0
    g%izeta = 0
    g%pref = 0
    do pass = 1, 2
      fill = 0
      do e = 1, ne
        do f = 1, int(nf(e))
          id = group_of(g, e, int(ftype(f, e)), int(fel1(f, e)) + 1, int(fel2(f, e)) + 1)
          fill(id) = fill(id) + 1
          if (pass == 2) g%col(g%ptr(id) + fill(id) - 1) = f
        end do
      end do
      if (pass == 1) then
        g%ptr(1) = 1
        do id = 1, n_groups
          g%ptr(id + 1) = g%ptr(id) + fill(id)
        end do
      end if
    end do
    do e = 1, ne
      do f = 1, int(nf(e))
        if (ftype(f, e) == 2) cycle
        g%pref(f, e) = 2.0_dp**(1 - fzeta(f, e))
        if (fzeta(f, e) >= 1 .and. fzeta(f, e) <= 64) then
          if (fzeta(f, e) == real(nint(fzeta(f, e)), dp)) g%izeta(f, e) = nint(fzeta(f, e))
        end if
      end do
    end do
  end function build_groups

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

  integer(ik) function allocate_shell(n_max, s) result(status)
    integer, intent(in) :: n_max
    type(shell_t), intent(out) :: s
    integer :: n, stat
    n = max(1, n_max)
    allocate (s%x(3, n), s%r(n), s%inv_r(n), s%r2(n), s%fc(n), s%dfc(n), s%el(n), s%slot(n), stat=stat)
    status = merge(0_ik, err_memory, stat == 0)
    s%n = 0
  end function allocate_shell

  !> Copy centre entries lo..hi (1-based) into the shell; precompute r, 1/r, fc, dfc.
  integer(ik) function gather_shell(cut, lo, hi, nb_vec, nb_atom, atom_el, nb_slot, deriv, s, bad) &
    result(status)
    type(cutoff_t), intent(in) :: cut
    integer(ik), intent(in) :: lo, hi, nb_atom(:), atom_el(:), nb_slot(:)
    real(dp), intent(in) :: nb_vec(:, :)
    logical, intent(in) :: deriv
    type(shell_t), intent(inout) :: s
    integer(ik), intent(inout) :: bad
    integer(ik) :: q
    integer :: n
    status = 0
    s%n = int(hi - lo + 1)
    do q = lo, hi
      n = int(q - lo + 1)
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
      s%el(n) = int(atom_el(nb_atom(q) + 1)) + 1
      if (deriv) s%slot(n) = nb_slot(q) + 1
    end do
  end function gather_shell

  !> Add every G2 term of one centre: exp(-eta (r - Rs)^2 / Rc^2) fc(r).
  subroutine radial(e, s, g, rc, feta, foffset, deriv, cslot, val, derivs)
    integer, intent(in) :: e
    type(shell_t), intent(in) :: s
    type(groups_t), intent(in) :: g
    real(dp), intent(in) :: rc, feta(:, :), foffset(:, :)
    logical, intent(in) :: deriv
    integer(ik), intent(in) :: cslot
    real(dp), intent(inout) :: val(:), derivs(:, :, :)
    integer :: n, id, m, f
    real(dp) :: inv_rc2, d, ex, dgdr, gv(3)
    inv_rc2 = 1 / rc**2
    do n = 1, s%n
      if (s%fc(n) == 0 .and. s%dfc(n) == 0) cycle
      id = (e - 1) * g%ne + s%el(n)
      do m = g%ptr(id), g%ptr(id + 1) - 1
        f = g%col(m)
        d = s%r(n) - foffset(f, e)
        ex = exp(-feta(f, e) * d * d * inv_rc2)
        val(f) = val(f) + ex * s%fc(n)
        if (.not. deriv) cycle
        dgdr = ex * (s%dfc(n) - 2 * feta(f, e) * d * inv_rc2 * s%fc(n))
        gv = (dgdr * s%inv_r(n)) * s%x(:, n)
        derivs(f, :, s%slot(n)) = derivs(f, :, s%slot(n)) + gv
        derivs(f, :, cslot) = derivs(f, :, cslot) - gv
      end do
    end do
  end subroutine radial

  !> Add every G4 and G5 term of one centre, one unordered neighbour pair (j < k) at a time.
  !> G4 skips pairs with r_jk >= Rc (their fc(r_jk) is 0); G5 does not depend on r_jk.
  subroutine angular(e, s, g, cut, feta, fzeta, fgamma, deriv, cslot, val, derivs)
    integer, intent(in) :: e
    type(shell_t), intent(in) :: s
    type(groups_t), intent(in) :: g
    type(cutoff_t), intent(in) :: cut
    real(dp), intent(in) :: feta(:, :), fzeta(:, :), fgamma(:, :)
    logical, intent(in) :: deriv
    integer(ik), intent(in) :: cslot
    real(dp), intent(inout) :: val(:), derivs(:, :, :)
    integer :: j, k, pair, lo4, hi4, lo5, hi5
    real(dp) :: rc2, xjk(3), rjk2, rjk, fjk, dfjk, c
    rc2 = cut%rc**2
    do j = 1, s%n - 1
      if (s%fc(j) == 0) cycle
      do k = j + 1, s%n
        if (s%fc(k) == 0) cycle
        pair = ((e - 1) * g%ne + min(s%el(j), s%el(k)) - 1) * g%ne + max(s%el(j), s%el(k))
        lo5 = g%ptr(g%base5 + pair)
        hi5 = g%ptr(g%base5 + pair + 1) - 1
        lo4 = g%ptr(g%base4 + pair)
        hi4 = g%ptr(g%base4 + pair + 1) - 1
        xjk = s%x(:, k) - s%x(:, j)
        rjk2 = xjk(1)**2 + xjk(2)**2 + xjk(3)**2
        if (rjk2 >= rc2) hi4 = lo4 - 1
        if (hi4 < lo4 .and. hi5 < lo5) cycle
        c = (s%x(1, j) * s%x(1, k) + s%x(2, j) * s%x(2, k) + s%x(3, j) * s%x(3, k)) &
            * s%inv_r(j) * s%inv_r(k)
        if (hi4 >= lo4) then
          rjk = sqrt(rjk2)
          call cutoff_value(cut, rjk, fjk, dfjk)
          call triplet(.true., lo4, hi4, e, j, k, c, rjk, fjk, dfjk, s, g, rc2, feta, fzeta, fgamma, &
                       deriv, cslot, val, derivs)
        end if
        if (hi5 >= lo5) then
          call triplet(.false., lo5, hi5, e, j, k, c, 1.0_dp, 1.0_dp, 0.0_dp, s, g, rc2, feta, fzeta, &
                       fgamma, deriv, cslot, val, derivs)
        end if
      end do
    end do
  end subroutine angular

  !> Add the terms of neighbours j, k (shell slots) to the G4 (g4) or G5 features in
  !> group columns lo..hi. The gradient with respect to R_ij = R_j - R_i is
  !> a_jj R_ij + a_jk R_ik, with respect to R_ik it is a_jk R_ij + a_kk R_ik, and the
  !> centre moves by minus their sum (translation invariance).
  subroutine triplet(g4, lo, hi, e, j, k, c, rjk, fjk, dfjk, s, g, rc2, feta, fzeta, fgamma, &
                     deriv, cslot, val, derivs)
    logical, intent(in) :: g4, deriv
    integer, intent(in) :: lo, hi, e, j, k
    real(dp), intent(in) :: c, rjk, fjk, dfjk, rc2, feta(:, :), fzeta(:, :), fgamma(:, :)
    type(shell_t), intent(in) :: s
    type(groups_t), intent(in) :: g
    integer(ik), intent(in) :: cslot
    real(dp), intent(inout) :: val(:), derivs(:, :, :)
    integer :: m, f
    real(dp) :: fcut, dij, dik, djk, sum_r2, h_jj, h_jk, c_a, c_j, c_k
    real(dp) :: eta_last, ex, t, tz1, w, a, q, ah, a_jj, a_jk, a_kk, gj(3), gk(3)

    if (g4) then
      fcut = s%fc(j) * s%fc(k) * fjk
      dij = s%dfc(j) * s%fc(k) * fjk * s%inv_r(j)
      dik = s%fc(j) * s%dfc(k) * fjk * s%inv_r(k)
      djk = s%fc(j) * s%fc(k) * dfjk / rjk
      sum_r2 = s%r2(j) + s%r2(k) + rjk * rjk
      h_jj = 2
      h_jk = -1
    else
      fcut = s%fc(j) * s%fc(k)
      dij = s%dfc(j) * s%fc(k) * s%inv_r(j)
      dik = s%fc(j) * s%dfc(k) * s%inv_r(k)
      djk = 0
      sum_r2 = s%r2(j) + s%r2(k)
      h_jj = 1
      h_jk = 0
    end if
    c_a = s%inv_r(j) * s%inv_r(k)
    c_j = -c * s%inv_r(j)**2
    c_k = -c * s%inv_r(k)**2
    eta_last = -huge(1.0_dp)
    ex = 0
    do m = lo, hi
      f = g%col(m)
      if (feta(f, e) /= eta_last) then
        eta_last = feta(f, e)
        ex = exp(-eta_last * sum_r2 / rc2)
      end if
      t = 1 + fgamma(f, e) * c
      if (g%izeta(f, e) > 0) then
        tz1 = int_power(t, g%izeta(f, e) - 1)
      else
        tz1 = t**(fzeta(f, e) - 1)
      end if
      w = g%pref(f, e) * tz1 * t * ex
      a = w * fcut
      val(f) = val(f) + a
      if (.not. deriv) cycle
      q = g%pref(f, e) * fzeta(f, e) * fgamma(f, e) * tz1 * ex * fcut
      ah = -2 * feta(f, e) / rc2 * a
      a_jj = q * c_j + h_jj * ah + w * (dij + djk)
      a_jk = q * c_a + h_jk * ah - w * djk
      a_kk = q * c_k + h_jj * ah + w * (dik + djk)
      gj = a_jj * s%x(:, j) + a_jk * s%x(:, k)
      gk = a_jk * s%x(:, j) + a_kk * s%x(:, k)
      derivs(f, :, s%slot(j)) = derivs(f, :, s%slot(j)) + gj
      derivs(f, :, s%slot(k)) = derivs(f, :, s%slot(k)) + gk
      derivs(f, :, cslot) = derivs(f, :, cslot) - (gj + gk)
    end do
  end subroutine triplet

end module amp_gaussian_kernels
