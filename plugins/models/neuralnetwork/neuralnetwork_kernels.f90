! Compiled loss and gradient of the atom-centred neural-network model (Amp's definitions).
!
! Called through ctypes by amp_plugins/models/neuralnetwork/_fortran.py, which prepares every
! array once per shard (scaled inputs, 1-based indices, per-image row ranges, packed
! derivative blocks, scratch) and then passes only pointers per call. No Fortran I/O,
! no allocate: all memory comes from Python, so the optimised build needs nothing
! from libgfortran.
!
! Three phases per call:
!   A. per element, the network over all its atoms of the shard in chunks of rows
!      (loops run over atoms, so the compiler vectorises them): activations and, with
!      forces, the input gradient u_i = dE_i/dx_i (raw features);
!   B. per image: the energy residual; with forces F_m -= dfp_p^T u_i over the image's
!      derivative blocks p = (i, m), the force residuals w = dLoss/dF, then
!      v_i = sum_p dfp_p w_m over the same blocks again while they are in cache;
!   C. per element over chunks of rows: one forward-mode pass along v (tangent) and one
!      reverse pass give the parameter gradient of the energy and force terms
!      (second-order chain rule, no d(forces)/d(params)). Sums over atoms run in LN
!      lanes (no reductions the compiler must keep in order, so they vectorise too).
!
! Array layouts (Fortran order; Python passes C-contiguous arrays of the transposed shape):
!   xt(ld, F)      scaled fingerprints of one element's atoms, rows n+1..ld zero
!                  (x' = -1 + 2 (x - min)/(max - min) where max - min > 1e-8, else x)
!   scale(F)       dx'/dx (2/(max - min) or 1)
!   rows(nimg+1)   1-based first row of each image; rows(I+1) - 1 is its last
!   work(ld, H + 2F + 1)  activations of every layer (H = sum of layer widths), U = dE/dx,
!                  V = d/dx' direction, per-row energy weight g
!   bptr(n+1)      1-based first derivative block of each centre row (blocks sorted by centre)
!   neigh(P)       1-based shard atom index moved by each block
!   bpat(P)        pattern of each block: the features it may have nonzero
!   bacc(P)        0-based start of each block's slot in its image's force sums
!   sptr(nimg+1)   1-based first slot of each image; slot(3, S): per slot (pattern, neighbour pair
!                  occurring in the image) its 1-based neighbour, pattern and 0-based start (3 pcnt values)
!   boff(P)        1-based start of each block's data in dc
!   dc(*)          block p: dc(boff + (l-1) nk + j - 1) = d x_f(centre) / d R_l(neighbour), f = pidx(j, k)
!   pcnt(npat), pidx(F + PAD, npat)  feature count (a multiple of PAD, padded with zero data) and
!                  1-based feature indices of each pattern
!   weights of layer k: W_k (n_(k-1) + 1, n_k) row-major in the parameter vector, i.e. the
!   Fortran array wt(n_k, n_(k-1) + 1) with the biases in the last column.
module amp_nn_kernels
  use, intrinsic :: iso_c_binding, only: c_double, c_int64_t, c_ptr, c_f_pointer
  implicit none
  private
  public :: amp_nn_loss, amp_nn_loss_many, amp_nn_activate

  integer, parameter :: dp = c_double, ik = c_int64_t
  integer(ik), parameter :: TANH_ = 0, SIGMOID_ = 1, LINEAR_ = 2
  integer(ik), parameter :: LN = 16  ! lanes of the sums over atoms; rows are padded to a multiple
  integer(ik), parameter :: PAD = 4  ! packed blocks hold a multiple of PAD features
  integer, parameter :: NINFO = 12, NPTR = 14

  ! One element's arrays and sizes (views of the Python arrays).
  type :: element_t
    integer(ik) :: n, ld, nf, np, nl, woff, islope, iint, nh, npat, ndc, cu, cv, cg
    integer(ik), pointer, contiguous :: sizes(:) => null()
    real(dp), pointer, contiguous :: xt(:, :) => null(), scale(:) => null(), work(:, :) => null()
    real(dp), pointer, contiguous :: dc(:) => null()
    integer(ik), pointer, contiguous :: rows(:) => null(), bptr(:) => null(), neigh(:) => null()
    integer(ik), pointer, contiguous :: bpat(:) => null(), boff(:) => null(), pcnt(:) => null()
    integer(ik), pointer, contiguous :: pidx(:, :) => null(), bacc(:) => null(), sptr(:) => null()
    integer(ik), pointer, contiguous :: slot(:, :) => null()
  end type element_t

contains

  ! y(1:n) = f(x(1:n)). Plain loops over the intrinsics, so that gfortran calls the vector
  ! variants of tanh and exp (glibc's libmvec, declared to gfortran by glibc's math-vector-fortran.h).
  subroutine activate(kind, x, y)
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: x(:)
    real(dp), intent(out) :: y(:)
    integer(ik) :: i, n
    n = size(x, kind=ik)
    select case (kind)
    case (TANH_)
      do i = 1, n
        y(i) = tanh(x(i))
      end do
    case (SIGMOID_)
      do i = 1, n
        y(i) = 1.0_dp / (1.0_dp + exp(-x(i)))
      end do
    case default
      y = x
    end select
  end subroutine activate

  ! The activations of n values for the tests (x, y: C arrays of n doubles).
  subroutine amp_nn_activate(kind, n, x, y) bind(C, name="amp_nn_activate")
    integer(ik), value, intent(in) :: kind, n
    real(dp), intent(in) :: x(n)
    real(dp), intent(out) :: y(n)
    call activate(kind, x, y)
  end subroutine amp_nn_activate

  ! s = f'(x) written in terms of the outputs o = f(x). The activation is chosen once, outside
  ! the loop, so the loop vectorises (an elemental function with the choice inside does not).
  subroutine slope_of(kind, o, s)
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: o(:)
    real(dp), intent(out) :: s(:)
    select case (kind)
    case (TANH_)
      s = 1.0_dp - o * o
    case (SIGMOID_)
      s = o * (1.0_dp - o)
    case default
      s = 1.0_dp
    end select
  end subroutine slope_of

  ! s = f''(x) written in terms of the outputs o = f(x) (see slope_of).
  subroutine curvature_of(kind, o, s)
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: o(:)
    real(dp), intent(out) :: s(:)
    select case (kind)
    case (TANH_)
      s = -2.0_dp * o * (1.0_dp - o * o)
    case (SIGMOID_)
      s = o * (1.0_dp - o) * (1.0_dp - 2.0_dp * o)
    case default
      s = 0.0_dp
    end select
  end subroutine curvature_of

  ! y(ry + (0:c-1), cy + j) = sum_i x(rx + (0:c-1), cx + i) wt(j, i) (+ wt(j, nin + 1) when bias).
  subroutine lin(c, nin, nout, x, ldx, rx, cx, y, ldy, ry, cy, wt, bias)
    integer(ik), intent(in) :: c, nin, nout, ldx, rx, cx, ldy, ry, cy
    real(dp), intent(in) :: x(ldx, *), wt(nout, nin + 1)
    real(dp), intent(inout) :: y(ldy, *)
    logical, intent(in) :: bias
    integer(ik) :: i, j, x1, y1
    x1 = rx + c - 1
    y1 = ry + c - 1
    do j = 1, nout
      if (bias) then
        y(ry:y1, cy + j) = wt(j, nin + 1)
      else
        y(ry:y1, cy + j) = 0.0_dp
      end if
      do i = 1, nin
        y(ry:y1, cy + j) = y(ry:y1, cy + j) + x(rx:x1, cx + i) * wt(j, i)
      end do
    end do
  end subroutine lin

  ! y(ry + (0:c-1), cy + i) = sum_j d(1:c, j) wt(j, i) for the weight columns (biases excluded).
  subroutine lin_t(c, nin, nout, d, ldd, y, ldy, ry, cy, wt)
    integer(ik), intent(in) :: c, nin, nout, ldd, ldy, ry, cy
    real(dp), intent(in) :: d(ldd, *), wt(nout, nin + 1)
    real(dp), intent(inout) :: y(ldy, *)
    integer(ik) :: i, j, y1
    y1 = ry + c - 1
    do i = 1, nin
      y(ry:y1, cy + i) = 0.0_dp
      do j = 1, nout
        y(ry:y1, cy + i) = y(ry:y1, cy + i) + d(1:c, j) * wt(j, i)
      end do
    end do
  end subroutine lin_t

  ! g(j, i) += sum_r a(r, i) ob(r, j) [+ b(r, i) db(r, j)]; g(j, nin + 1) += sum_r ob(r, j),
  ! with a(r, i) = xa(ra + r - 1, ca + i) and b likewise. c is a multiple of LN: the sums run in LN lanes.
  subroutine outer(c, nin, nout, xa, lda, ra, ca, xb, ldb, rb, cb, ob, db, ldo, with_tangent, g)
    integer(ik), intent(in) :: c, nin, nout, lda, ra, ca, ldb, rb, cb, ldo
    real(dp), intent(in) :: xa(lda, *), xb(ldb, *), ob(ldo, *), db(ldo, *)
    logical, intent(in) :: with_tangent
    real(dp), intent(inout) :: g(nout, nin + 1)
    real(dp) :: s(LN)
    integer(ik) :: i, j, r, a, b
    do i = 1, nin
      do j = 1, nout
        s = 0.0_dp
        if (with_tangent) then
          do r = 1, c, LN
            a = ra + r - 1
            b = rb + r - 1
            s = s + xa(a:a + LN - 1, ca + i) * ob(r:r + LN - 1, j) + xb(b:b + LN - 1, cb + i) * db(r:r + LN - 1, j)
          end do
        else
          do r = 1, c, LN
            a = ra + r - 1
            s = s + xa(a:a + LN - 1, ca + i) * ob(r:r + LN - 1, j)
          end do
        end if
        g(j, i) = g(j, i) + sum(s)
      end do
    end do
    do j = 1, nout
      s = 0.0_dp
      do r = 1, c, LN
        s = s + ob(r:r + LN - 1, j)
      end do
      g(j, nin + 1) = g(j, nin + 1) + sum(s)
    end do
  end subroutine outer

  ! 1-based index in the parameter vector of the first weight of layer k.
  pure integer(ik) function weight_start(el, k)
    type(element_t), intent(in) :: el
    integer(ik), intent(in) :: k
    integer(ik) :: j
    weight_start = el%woff
    do j = 1, k - 1
      weight_start = weight_start + (el%sizes(j) + 1) * el%sizes(j + 1)
    end do
  end function weight_start

  ! 0-based column of layer k's first output in the activations.
  pure integer(ik) function column_start(el, k)
    type(element_t), intent(in) :: el
    integer(ik), intent(in) :: k
    column_start = sum(el%sizes(2:k))
  end function column_start

  ! Phase A for rows r0..r0+c-1: activations; with forces U = dE/dx (raw features).
  ! d1, d2 are scratch (ch, *).
  subroutine chunk_forward(el, kind, vec, r0, c, with_forces, ch, d1, d2)
    type(element_t), intent(inout) :: el
    integer(ik), intent(in) :: kind, r0, c, ch
    real(dp), intent(in) :: vec(*)
    logical, intent(in) :: with_forces
    real(dp), intent(inout) :: d1(ch, *), d2(ch, *)
    integer(ik) :: k, w, off, prev, nout, i
    w = el%woff
    off = 0
    prev = 0
    do k = 1, el%nl
      nout = el%sizes(k + 1)
      if (k == 1) then
        call lin(c, el%nf, nout, el%xt, el%ld, r0, 0_ik, d1, ch, 1_ik, 0_ik, vec(w), .true.)
      else
        call lin(c, el%sizes(k), nout, el%work, el%ld, r0, prev, d1, ch, 1_ik, 0_ik, vec(w), .true.)
      end if
      do i = 1, nout
        call activate(kind, d1(1:c, i), el%work(r0:r0 + c - 1, off + i))
      end do
      w = w + (el%sizes(k) + 1) * nout
      prev = off
      off = off + nout
    end do
    if (.not. with_forces) return
    ! Input gradient: d = slope f'(o_L); d <- (d W^T) f'(o) down the layers; U = d W_1^T scale.
    call slope_of(kind, el%work(r0:r0 + c - 1, el%nh), d1(1:c, 1))
    d1(1:c, 1) = vec(el%islope) * d1(1:c, 1)
    do k = el%nl, 2, -1
      w = weight_start(el, k)
      prev = column_start(el, k - 1)
      call lin_t(c, el%sizes(k), el%sizes(k + 1), d1, ch, d2, ch, 1_ik, 0_ik, vec(w))
      do i = 1, el%sizes(k)
        call slope_of(kind, el%work(r0:r0 + c - 1, prev + i), d1(1:c, i))
        d1(1:c, i) = d2(1:c, i) * d1(1:c, i)
      end do
    end do
    call lin_t(c, el%nf, el%sizes(2), d1, ch, el%work, el%ld, r0, el%cu, vec(el%woff))
    do i = 1, el%nf
      el%work(r0:r0 + c - 1, el%cu + i) = el%work(r0:r0 + c - 1, el%cu + i) * el%scale(i)
    end do
  end subroutine chunk_forward

  ! Phase C for rows r0..r0+c-1: tangent along V (t, dt: scratch (ch, nh)), then the reverse
  ! pass (ob, db, ob2, db2: scratch (ch, *)) adding d(g E_i - v . dE_i/dx')/d params to grad.
  subroutine chunk_reverse(el, kind, vec, r0, c, with_tangent, ch, t, dt, ob, db, ob2, db2, grad)
    type(element_t), intent(in) :: el
    integer(ik), intent(in) :: kind, r0, c, ch
    real(dp), intent(in) :: vec(*)
    logical, intent(in) :: with_tangent
    real(dp), intent(inout) :: t(ch, *), dt(ch, *), ob(ch, *), db(ch, *), ob2(ch, *), db2(ch, *), grad(*)
    integer(ik) :: k, j, w, off, nin, nout, live, r1
    real(dp) :: s, sl(c), cv(c)
    r1 = r0 + c - 1
    if (with_tangent) call tangent(el, kind, vec, r0, c, ch, t, dt)
    s = vec(el%islope)
    grad(el%iint) = grad(el%iint) + sum(el%work(r0:r1, el%cg))
    grad(el%islope) = grad(el%islope) + sum(el%work(r0:r1, el%cg) * el%work(r0:r1, el%nh))
    ob(1:c, 1) = s * el%work(r0:r1, el%cg)
    if (with_tangent) then
      grad(el%islope) = grad(el%islope) - sum(dt(1:c, el%nh))
      live = max(0_ik, min(c, el%n - r0 + 1))
      db(1:live, 1) = -s
      db(live + 1:c, 1) = 0.0_dp
    end if
    do k = el%nl, 1, -1
      nin = el%sizes(k)
      nout = el%sizes(k + 1)
      w = weight_start(el, k)
      off = column_start(el, k)
      ! Output adjoints -> net adjoints, in place: ob -> d net, db -> d (d net).
      do j = 1, nout
        call slope_of(kind, el%work(r0:r1, off + j), sl)
        if (with_tangent) then
          call curvature_of(kind, el%work(r0:r1, off + j), cv)
          ob(1:c, j) = sl * ob(1:c, j) + cv * t(1:c, off + j) * db(1:c, j)
          db(1:c, j) = sl * db(1:c, j)
        else
          ob(1:c, j) = sl * ob(1:c, j)
        end if
      end do
      if (k == 1) then
        call outer(c, nin, nout, el%xt, el%ld, r0, 0_ik, el%work, el%ld, r0, el%cv, ob, db, ch, &
                   with_tangent, grad(w))
      else
        j = column_start(el, k - 1)
        call outer(c, nin, nout, el%work, el%ld, r0, j, dt, ch, 1_ik, j, ob, db, ch, with_tangent, grad(w))
        call lin_t(c, nin, nout, ob, ch, ob2, ch, 1_ik, 0_ik, vec(w))
        ob(1:c, 1:nin) = ob2(1:c, 1:nin)
        if (with_tangent) then
          call lin_t(c, nin, nout, db, ch, db2, ch, 1_ik, 0_ik, vec(w))
          db(1:c, 1:nin) = db2(1:c, 1:nin)
        end if
      end if
    end do
  end subroutine chunk_reverse

  ! Tangent of the forward pass along V for rows r0..r0+c-1: t = d net_k, dt = d o_k.
  subroutine tangent(el, kind, vec, r0, c, ch, t, dt)
    type(element_t), intent(in) :: el
    integer(ik), intent(in) :: kind, r0, c, ch
    real(dp), intent(in) :: vec(*)
    real(dp), intent(inout) :: t(ch, *), dt(ch, *)
    integer(ik) :: k, i, w, off, prev
    w = el%woff
    call lin(c, el%nf, el%sizes(2), el%work, el%ld, r0, el%cv, t, ch, 1_ik, 0_ik, vec(w), .false.)
    off = 0
    prev = 0
    do k = 1, el%nl
      if (k > 1) call lin(c, el%sizes(k), el%sizes(k + 1), dt, ch, 1_ik, prev, t, ch, 1_ik, off, vec(w), .false.)
      do i = off + 1, off + el%sizes(k + 1)
        call slope_of(kind, el%work(r0:r0 + c - 1, i), dt(1:c, i))
        dt(1:c, i) = dt(1:c, i) * t(1:c, i)
      end do
      w = w + (el%sizes(k) + 1) * el%sizes(k + 1)
      prev = off
      off = off + el%sizes(k + 1)
    end do
  end subroutine tangent

  ! Forces of one image from one element's centres: f(l, m) -= sum over blocks (i, m) of dfp^T u_i.
  subroutine image_forces(el, img, a0, nat, mf, u3, acc, f)
    type(element_t), intent(in) :: el
    integer(ik), intent(in) :: img, a0, nat, mf
    real(dp), intent(inout) :: u3(3 * mf, *), acc(*), f(3, nat)
    integer(ik) :: r0, r1, s0, s1
    r0 = el%rows(img)
    r1 = el%rows(img + 1) - 1
    s0 = el%sptr(img)
    s1 = el%sptr(img + 1) - 1
    if (r1 < r0 .or. s1 < s0) return
    call forces_of(el%nf, el%ld, el%npat, r0, r1, a0, nat, mf, el%bptr(r0:r1 + 1), el%bacc, el%bpat, &
                   el%boff, el%dc, el%pcnt, el%pidx, el%work(:, el%cu + 1:el%cu + el%nf), &
                   el%slot(:, s0:s1), u3, acc, f)
  end subroutine image_forces

  ! Body of image_forces on plain arrays (u(ld, F): the U columns). acc(*) holds per slot
  ! (pattern k, neighbour m occurring in the image; slot(:, s) = (m, k, start)) an (3 nk)
  ! array of elementwise products, summed at the end (no per-block reductions); block p adds
  ! into the slot starting at bacc(p). u3(3 mf, npat): the centre's u gathered per pattern, three times.
  subroutine forces_of(nf, ld, npat, r0, r1, a0, nat, mf, bptr, bacc, bpat, boff, dc, pcnt, pidx, u, slot, &
                       u3, acc, f)
    integer(ik), intent(in) :: nf, ld, npat, r0, r1, a0, nat, mf, slot(:, :)
    integer(ik), intent(in) :: bptr(r0:r1 + 1), bacc(*), bpat(*), boff(*), pcnt(npat), pidx(nf + PAD, npat)
    real(dp), intent(in) :: dc(*), u(ld, nf)
    real(dp), intent(inout) :: u3(3 * mf, npat), acc(*), f(3, nat)
    integer(ik) :: r, k, nk, p, m, o, a, l, j, s, ns
    real(dp) :: t(PAD)
    ns = size(slot, 2, kind=ik)
    acc(1:slot(3, ns) + 3 * pcnt(slot(2, ns))) = 0.0_dp
    do r = r0, r1
      do k = 1, npat
        nk = pcnt(k)
        do j = 1, nk
          u3(j, k) = u(r, pidx(j, k))
          u3(nk + j, k) = u3(j, k)
          u3(2 * nk + j, k) = u3(j, k)
        end do
      end do
      do p = bptr(r), bptr(r + 1) - 1
        k = bpat(p)
        nk = 3 * pcnt(k)
        a = bacc(p)
        o = boff(p) - 1
        do j = 0, nk - 1, PAD  ! nk is a multiple of PAD: whole vectors, no remainder loop
          acc(a + j + 1:a + j + PAD) = acc(a + j + 1:a + j + PAD) + dc(o + j + 1:o + j + PAD) * u3(j + 1:j + PAD, k)
        end do
      end do
    end do
    do s = 1, ns
      m = slot(1, s) - a0 + 1
      nk = pcnt(slot(2, s))
      a = slot(3, s)
      do l = 1, 3
        t = 0.0_dp
        do j = a + (l - 1) * nk + 1, a + l * nk, PAD
          t = t + acc(j:j + PAD - 1)
        end do
        f(l, m) = f(l, m) - sum(t)
      end do
    end do
  end subroutine forces_of

  ! V rows of one image's centres of one element: v_i = scale * sum_p dfp_p w_m (vacc: scratch (mf, npat)).
  subroutine image_directions(el, img, ntot, w, mf, vacc)
    type(element_t), intent(inout) :: el
    integer(ik), intent(in) :: img, ntot, mf
    real(dp), intent(in) :: w(3, ntot)
    real(dp), intent(inout) :: vacc(mf, *)
    integer(ik) :: r0, r1
    r0 = el%rows(img)
    r1 = el%rows(img + 1) - 1
    if (r1 < r0) return
    call directions_of(el%nf, el%ld, el%npat, r0, r1, ntot, mf, el%bptr(r0:r1 + 1), el%neigh, el%bpat, &
                       el%boff, el%dc, el%pcnt, el%pidx, el%scale, w, vacc, el%work(:, el%cv + 1:el%cv + el%nf))
  end subroutine image_directions

  ! Body of image_directions on plain arrays (v(ld, F): the V columns).
  subroutine directions_of(nf, ld, npat, r0, r1, ntot, mf, bptr, neigh, bpat, boff, dc, pcnt, pidx, scale, w, &
                           vacc, v)
    integer(ik), intent(in) :: nf, ld, npat, r0, r1, ntot, mf
    integer(ik), intent(in) :: bptr(r0:r1 + 1), neigh(*), bpat(*), boff(*), pcnt(npat), pidx(nf + PAD, npat)
    real(dp), intent(in) :: dc(*), scale(nf), w(3, ntot)
    real(dp), intent(inout) :: vacc(mf, npat), v(ld, nf)
    integer(ik) :: r, k, nk, p, m, o, j, q
    real(dp) :: w1, w2, w3
    do r = r0, r1
      vacc = 0.0_dp
      do p = bptr(r), bptr(r + 1) - 1
        k = bpat(p)
        nk = pcnt(k)
        m = neigh(p)
        o = boff(p) - 1
        w1 = w(1, m)
        w2 = w(2, m)
        w3 = w(3, m)
        do j = 0, nk - 1, PAD  ! whole vectors, as in forces_of
          q = o + j
          vacc(j + 1:j + PAD, k) = vacc(j + 1:j + PAD, k) + dc(q + 1:q + PAD) * w1 &
                                   + dc(q + nk + 1:q + nk + PAD) * w2 + dc(q + 2 * nk + 1:q + 2 * nk + PAD) * w3
        end do
      end do
      v(r, :) = 0.0_dp
      do k = 1, npat
        do j = 1, pcnt(k)
          v(r, pidx(j, k)) = v(r, pidx(j, k)) + vacc(j, k)
        end do
      end do
      v(r, :) = v(r, :) * scale
    end do
  end subroutine directions_of

  ! Build the element views from the C pointers ptrs(:, e) (order: see _nn_fortran.POINTERS).
  subroutine bind_elements(ne, nimg, maxl, info, sizes, ptrs, with_forces, els)
    integer(ik), intent(in) :: ne, nimg, maxl, info(NINFO, ne)
    integer(ik), intent(in), target :: sizes(0:maxl, ne)
    type(c_ptr), intent(in) :: ptrs(NPTR, ne)
    logical, intent(in) :: with_forces
    type(element_t), intent(out) :: els(ne)
    integer(ik) :: e
    do e = 1, ne
      associate (el => els(e))
        el%n = info(1, e)
        el%ld = info(2, e)
        el%nf = info(3, e)
        el%np = info(4, e)
        el%nl = info(5, e)
        el%woff = info(6, e)
        el%islope = info(7, e)
        el%iint = info(8, e)
        el%nh = info(9, e)
        el%npat = info(10, e)
        el%ndc = info(11, e)
        el%cu = el%nh
        el%cv = el%nh + el%nf
        el%cg = el%nh + 2 * el%nf + 1
        el%sizes(1:maxl + 1) => sizes(:, e)
        call c_f_pointer(ptrs(1, e), el%xt, [el%ld, el%nf])
        call c_f_pointer(ptrs(2, e), el%scale, [el%nf])
        call c_f_pointer(ptrs(3, e), el%rows, [nimg + 1])
        call c_f_pointer(ptrs(4, e), el%work, [el%ld, el%cg])
        if (with_forces) then
          call c_f_pointer(ptrs(5, e), el%bptr, [el%n + 1])
          call c_f_pointer(ptrs(6, e), el%neigh, [el%np])
          call c_f_pointer(ptrs(7, e), el%bpat, [el%np])
          call c_f_pointer(ptrs(8, e), el%boff, [el%np])
          call c_f_pointer(ptrs(9, e), el%dc, [el%ndc])
          call c_f_pointer(ptrs(10, e), el%pcnt, [el%npat])
          call c_f_pointer(ptrs(11, e), el%pidx, [el%nf + PAD, el%npat])
          call c_f_pointer(ptrs(12, e), el%bacc, [el%np])
          call c_f_pointer(ptrs(13, e), el%sptr, [nimg + 1])
          call c_f_pointer(ptrs(14, e), el%slot, [3_ik, el%sptr(nimg + 1) - 1])
        end if
      end associate
    end do
  end subroutine bind_elements

  ! Turn image img's predicted forces f(:, a0:a1) into loss weights c_F 2 dF / (3 N); update sums.
  subroutine force_residuals(a0, a1, natoms, cf, fref, f, floss, fmax)
    integer(ik), intent(in) :: a0, a1, natoms
    real(dp), intent(in) :: cf, fref(3, *)
    real(dp), intent(inout) :: f(3, *), floss, fmax
    real(dp) :: res(3), acc
    integer(ik) :: a
    acc = 0.0_dp
    do a = a0, a1
      res = f(:, a) - fref(:, a)
      acc = acc + sum(res * res)
      fmax = max(fmax, maxval(abs(res)))
      f(:, a) = cf * 2.0_dp * res / (3.0_dp * real(natoms, dp))
    end do
    floss = floss + acc / (3.0_dp * real(natoms, dp))
  end subroutine force_residuals

  ! Phase B of one image: residuals, loss parts, per-row energy weights; with forces, the
  ! forces, their weights (left in f) and the V rows. scr: scratch of phase B.
  subroutine image_terms(els, ne, img, ntot, mf, natoms, a0, a1, forces, vec, coef, eref, fref, f, scr, out)
    integer(ik), intent(in) :: ne, img, ntot, mf, natoms, a0, a1
    type(element_t), intent(inout) :: els(ne)
    logical, intent(in) :: forces
    real(dp), intent(in) :: vec(*), coef(2), eref, fref(3, ntot)
    real(dp), intent(inout) :: f(3, ntot), scr(*), out(4)
    real(dp) :: energy, res, g
    integer(ik) :: e, r0, r1, nat, mp
    mp = maxval(els(:)%npat)
    nat = a1 - a0 + 1
    energy = 0.0_dp
    do e = 1, ne
      r0 = els(e)%rows(img)
      r1 = els(e)%rows(img + 1) - 1
      energy = energy + vec(els(e)%islope) * sum(els(e)%work(r0:r1, els(e)%nh)) &
               + vec(els(e)%iint) * real(r1 - r0 + 1, dp)
    end do
    res = (energy - eref) / real(natoms, dp)
    out(1) = out(1) + res * res
    out(3) = max(out(3), abs(res))
    g = coef(1) * 2.0_dp * res / real(natoms, dp)
    do e = 1, ne
      els(e)%work(els(e)%rows(img):els(e)%rows(img + 1) - 1, els(e)%cg) = g
    end do
    if (.not. forces) return
    f(:, a0:a1) = 0.0_dp
    do e = 1, ne
      call image_forces(els(e), img, a0, nat, mf, scr(1), scr(3 * mf * mp + 1), f(1, a0))
    end do
    call force_residuals(a0, a1, natoms, coef(2), fref, f, out(2), out(4))
    do e = ne, 1, -1  ! backwards: the blocks read last are the most likely still in cache
      call image_directions(els(e), img, ntot, f, mf, scr(1))
    end do
  end subroutine image_terms

  ! Loss parts and gradient of one shard; see the module header for the arrays.
  ! coef = (c_E, c_F); out = (energy_loss, force_loss, energy_maxresid, force_maxresid).
  subroutine amp_nn_loss(ne, nimg, ntot, nparam, maxl, ch, nscr, info, sizes, kind, with_forces, coef, &
                         natoms, atomstart, eref, fref, ptrs, vec, f, scratch, out, grad) bind(C, name="amp_nn_loss")
    integer(ik), value, intent(in) :: ne, nimg, ntot, nparam, maxl, ch, nscr, kind, with_forces
    integer(ik), intent(in) :: info(NINFO, ne), natoms(nimg), atomstart(nimg + 1)
    integer(ik), intent(in), target :: sizes(0:maxl, ne)
    real(dp), intent(in) :: coef(2), eref(nimg), fref(3, ntot), vec(nparam)
    type(c_ptr), intent(in) :: ptrs(NPTR, ne)
    real(dp), intent(inout) :: f(3, ntot)
    real(dp), intent(out) :: scratch(nscr), out(4), grad(nparam)
    type(c_ptr) :: works(ne, 1)
    works(:, 1) = ptrs(4, :)
    call amp_nn_loss_many(1_ik, ne, nimg, ntot, nparam, maxl, ch, nscr, info, sizes, kind, with_forces, coef, &
                          natoms, atomstart, eref, fref, ptrs, works, vec, f, scratch, out, grad)
  end subroutine amp_nn_loss

  ! The same for nmem parameter vectors vec(:, m) (an ensemble's members) at once, member m
  ! using the work arrays works(e, m): each image's derivative blocks are read from memory
  ! once and used by every member while in cache. Member m's numbers are those of
  ! amp_nn_loss at vec(:, m), which is this routine with nmem = 1.
  subroutine amp_nn_loss_many(nmem, ne, nimg, ntot, nparam, maxl, ch, nscr, info, sizes, kind, with_forces, coef, &
                              natoms, atomstart, eref, fref, ptrs, works, vec, f, scratch, out, grad) &
                              bind(C, name="amp_nn_loss_many")
    integer(ik), value, intent(in) :: nmem, ne, nimg, ntot, nparam, maxl, ch, nscr, kind, with_forces
    integer(ik), intent(in) :: info(NINFO, ne), natoms(nimg), atomstart(nimg + 1)
    integer(ik), intent(in), target :: sizes(0:maxl, ne)
    real(dp), intent(in) :: coef(2), eref(nimg), fref(3, ntot), vec(nparam, nmem)
    type(c_ptr), intent(in) :: ptrs(NPTR, ne), works(ne, nmem)
    real(dp), intent(inout) :: f(3, ntot)
    real(dp), intent(out) :: scratch(nscr), out(4, nmem), grad(nparam, nmem)
    type(element_t) :: els(ne, nmem)
    integer(ik) :: img, e, r, c, mh, mf, m
    logical :: forces
    forces = with_forces /= 0
    mh = maxval(info(9, :))
    mf = maxval(info(3, :)) + PAD  ! the longest (padded) pattern
    do m = 1, nmem
      call bind_elements(ne, nimg, maxl, info, sizes, ptrs, forces, els(:, m))
      do e = 1, ne
        call c_f_pointer(works(e, m), els(e, m)%work, [els(e, m)%ld, els(e, m)%cg])
      end do
    end do
    out = 0.0_dp
    grad = 0.0_dp
    do m = 1, nmem
      do e = 1, ne
        do r = 1, els(e, m)%ld, ch
          c = min(ch, els(e, m)%ld - r + 1)
          call chunk_forward(els(e, m), kind, vec(:, m), r, c, forces, ch, scratch(1), scratch(ch * mh + 1))
        end do
      end do
    end do
    do img = 1, nimg
      do m = 1, nmem  ! the image's blocks stay in cache from one member to the next
        call image_terms(els(:, m), ne, img, ntot, mf, natoms(img), atomstart(img), atomstart(img + 1) - 1, &
                         forces, vec(:, m), coef, eref(img), fref, f, scratch, out(:, m))
      end do
    end do
    do m = 1, nmem
      do e = 1, ne
        do r = 1, els(e, m)%ld, ch
          c = min(ch, els(e, m)%ld - r + 1)
          call chunk_reverse(els(e, m), kind, vec(:, m), r, c, forces, ch, scratch(1), scratch(ch * mh + 1), &
                             scratch(2 * ch * mh + 1), scratch(3 * ch * mh + 1), scratch(4 * ch * mh + 1), &
                             scratch(5 * ch * mh + 1), grad(:, m))
        end do
      end do
    end do
  end subroutine amp_nn_loss_many

end module amp_nn_kernels
