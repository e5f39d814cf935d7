! Filtering of a skin neighbour list, every MD step: the entries of a list built with
! cutoff + skin (amp_plugins/descriptors/gaussian/_neighbors.py, SkinList) that lie within the
! cutoff at the current positions, with their vectors and distances, in one pass.
!
! Called through ctypes from _neighbors.py (from_skin_list). Every routine is bind(C); no
! Fortran I/O, no runtime library calls. Arrays are C-ordered on the Python side, so a Python
! (n, 3) array is a (3, n) array here. All indices that come in are 0-based and are checked
! before use; a bad input returns an error code (the err_* constants) and the offending
! 0-based index in bad_index.
!
! The vectors are (R_j + S @ cell) - R_i with the operations in that order (parentheses are
! honoured), so they equal the numpy filter's bitwise; the squared distance is summed here,
! so a distance may differ from numpy's in the last bit.
module amp_skin_kernels
  use, intrinsic :: iso_c_binding, only: c_int64_t, c_double
  implicit none
  private
  public :: amp_skin_abi_version, amp_skin_filter

  integer, parameter :: dp = c_double, ik = c_int64_t
  integer(ik), parameter :: abi_version = 1

  integer(ik), parameter :: err_shape = 1      ! a size argument is negative
  integer(ik), parameter :: err_offsets = 2    ! entry offsets are not 0 .. n_entries, ascending
  integer(ik), parameter :: err_neighbour = 3  ! a neighbour atom index is out of range
  integer(ik), parameter :: err_overlap = 4    ! an entry within the cutoff is closer than `overlap`

contains

  function amp_skin_abi_version() result(version) bind(C, name="amp_skin_abi_version")
    integer(ik) :: version
    version = abi_version
  end function amp_skin_abi_version

  ! Keep the entries of centre i (starts(i - 1) < e <= starts(i)) whose image is closer than
  ! `cutoff` (Angstrom): n_kept of them, written in order to the first n_kept slots of the
  ! outputs; new_starts are the kept entries' offsets per centre.
  function amp_skin_filter(n_atoms, n_entries, starts, neighbour, shift, offsets, positions, cutoff, overlap, &
                           n_kept, new_starts, centre_out, neighbour_out, shift_out, vectors, distances, &
                           bad_index) result(status) bind(C, name="amp_skin_filter")
    integer(ik), value, intent(in) :: n_atoms, n_entries
    integer(ik), intent(in) :: starts(0:n_atoms), neighbour(n_entries), shift(3, n_entries)
    real(dp), intent(in) :: offsets(3, n_entries), positions(3, n_atoms)
    real(dp), value, intent(in) :: cutoff, overlap
    integer(ik), intent(out) :: n_kept, new_starts(0:n_atoms), centre_out(n_entries), neighbour_out(n_entries)
    integer(ik), intent(out) :: shift_out(3, n_entries), bad_index
    real(dp), intent(out) :: vectors(3, n_entries), distances(n_entries)
    integer(ik) :: status, i, j, e, k
    real(dp) :: v(3), d2, d, cut2

    status = 0
    bad_index = -1
    n_kept = 0
    if (n_atoms < 0 .or. n_entries < 0) then
      status = err_shape
      return
    end if
    new_starts(0) = 0
    if (starts(0) /= 0 .or. starts(n_atoms) /= n_entries) then
      status = err_offsets
      return
    end if
    do i = 1, n_atoms
      if (starts(i) < starts(i - 1)) then
        status = err_offsets
        bad_index = i - 1
        return
      end if
    end do
    do e = 1, n_entries
      if (neighbour(e) < 0 .or. neighbour(e) >= n_atoms) then
        status = err_neighbour
        bad_index = e - 1
        return
      end if
    end do
    cut2 = cutoff * cutoff
    k = 0
    do i = 1, n_atoms
      do e = starts(i - 1) + 1, starts(i)
        j = neighbour(e) + 1
        v = (positions(:, j) + offsets(:, e)) - positions(:, i)
        d2 = v(1) * v(1) + v(2) * v(2) + v(3) * v(3)
        if (d2 >= cut2) cycle
        d = sqrt(d2)
        if (d >= cutoff) cycle  ! the test a fresh search applies, on the rounded distance
        if (d < overlap) then
          status = err_overlap
          bad_index = e - 1
          return
        end if
        k = k + 1
        centre_out(k) = i - 1
        neighbour_out(k) = j - 1
        shift_out(:, k) = shift(:, e)
        vectors(:, k) = v
        distances(k) = d
      end do
      new_starts(i) = k
    end do
    n_kept = k
  end function amp_skin_filter

end module amp_skin_kernels
