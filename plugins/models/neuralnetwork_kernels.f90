! Compiled loss and gradient of the atom-centred neural-network model (Amp's definitions).
!
! Called through ctypes by amp_plugins/models/_nn_fortran.py, which prepares every
! array once per shard (scaled inputs, 1-based indices, per-image row ranges) and then
! passes only pointers per call. No Fortran I/O, no allocate: all memory comes from Python,
! so the optimised build needs nothing from libgfortran.
!
! Per image, two phases over the atoms of that image (every element):
!   1. forward pass, input gradient u_i = dE_i/dx_i (raw features), and the forces
!      F_m -= dfp_p^T u_i over the centre's derivative blocks p = (i, m) (accumulated
!      elementwise per neighbour, summed over features once per atom: no per-block reductions);
!   then the residuals of the image (energy, forces) and their loss weights;
!   2. v_i = sum_p dfp_p w_m (w = dLoss/dF), then one forward-mode pass of the network
!      along v_i (scaled) and one reverse pass give the parameter gradient of both the
!      energy and the force term (second-order chain rule, no d(forces)/d(params)).
! The second phase re-reads the image's derivative blocks while they are still in cache
! (L2/L3), so each call streams the shard's derivative data from memory once.
!
! Array layouts (Fortran order; Python passes C-contiguous arrays of the transposed shape):
!   xs(F, n)       scaled fingerprints of one element's atoms (x' = -1 + 2 (x - min)/(max - min)
!                  where max - min > 1e-8, else x)
!   scale(F)       dx'/dx (2/(max - min) or 1)
!   rows(nimg+1)   1-based first row of each image; rows(I+1) - 1 is its last
!   bptr(n+1)      1-based first derivative block of each centre row (blocks sorted by centre)
!   neigh(P)       1-based shard atom index moved by each block
!   dfp(F, 3, P)   d x_f(centre) / d R_l(neighbour)
!   work(H, n)     scratch: activations of every layer of every atom (H = sum of layer widths)
!   weights of layer k: W_k (n_(k-1) + 1, n_k) row-major in the parameter vector, i.e. the
!   Fortran array wt(n_k, n_(k-1) + 1) with the biases in the last column.
module amp_nn_kernels
  use, intrinsic :: iso_c_binding, only: c_double, c_int64_t, c_ptr, c_f_pointer
  implicit none
  private
  public :: amp_nn_loss

  integer, parameter :: dp = c_double, ik = c_int64_t
  integer(ik), parameter :: TANH_ = 0, SIGMOID_ = 1, LINEAR_ = 2
  integer, parameter :: NINFO = 8

  ! One element's arrays and offsets (views of the Python arrays).
  type :: element_t
    integer(ik) :: n, nf, np, nl, woff, islope, iint, nh
    integer(ik), pointer, contiguous :: sizes(:) => null()
    real(dp), pointer, contiguous :: xs(:, :) => null(), scale(:) => null(), dfp(:, :, :) => null()
    real(dp), pointer, contiguous :: work(:, :) => null()
    integer(ik), pointer, contiguous :: rows(:) => null(), bptr(:) => null(), neigh(:) => null()
  end type element_t

contains

  ! Activation value f(x).
  elemental real(dp) function act(kind, x)
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: x
    select case (kind)
    case (TANH_)
      act = tanh(x)
    case (SIGMOID_)
      act = 1.0_dp / (1.0_dp + exp(-x))
    case default
      act = x
    end select
  end function act

  ! First derivative f'(x) written in terms of the output o = f(x).
  elemental real(dp) function dact(kind, o)
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: o
    select case (kind)
    case (TANH_)
      dact = 1.0_dp - o * o
    case (SIGMOID_)
      dact = o * (1.0_dp - o)
    case default
      dact = 1.0_dp
    end select
  end function dact

  ! Second derivative f''(x) written in terms of the output o = f(x).
  elemental real(dp) function ddact(kind, o)
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: o
    select case (kind)
    case (TANH_)
      ddact = -2.0_dp * o * (1.0_dp - o * o)
    case (SIGMOID_)
      ddact = o * (1.0_dp - o) * (1.0_dp - 2.0_dp * o)
    case default
      ddact = 0.0_dp
    end select
  end function ddact

  ! net = wt(:, 1:nin) x + wt(:, nin + 1); o = f(net).
  subroutine layer_forward(kind, nin, nout, wt, x, o)
    integer(ik), intent(in) :: kind, nin, nout
    real(dp), intent(in) :: wt(nout, nin + 1), x(nin)
    real(dp), intent(out) :: o(nout)
    integer(ik) :: i
    o = wt(:, nin + 1)
    do i = 1, nin
      o = o + x(i) * wt(:, i)
    end do
    o = act(kind, o)
  end subroutine layer_forward

  ! y(i) = sum_j wt(j, i) d(j) for the weight columns (biases excluded).
  subroutine layer_back(nin, nout, wt, d, y)
    integer(ik), intent(in) :: nin, nout
    real(dp), intent(in) :: wt(nout, nin + 1), d(nout)
    real(dp), intent(out) :: y(nin)
    integer(ik) :: i
    do i = 1, nin
      y(i) = dot_product(wt(:, i), d)
    end do
  end subroutine layer_back

  ! g(:, i) += a(i) nb + b(i) dnb (i <= nin); g(:, nin + 1) += nb.
  subroutine layer_grad(nin, nout, a, b, nb, dnb, with_tangent, g)
    integer(ik), intent(in) :: nin, nout
    real(dp), intent(in) :: a(nin), b(nin), nb(nout), dnb(nout)
    logical, intent(in) :: with_tangent
    real(dp), intent(inout) :: g(nout, nin + 1)
    integer(ik) :: i
    if (with_tangent) then
      do i = 1, nin
        g(:, i) = g(:, i) + a(i) * nb + b(i) * dnb
      end do
    else
      do i = 1, nin
        g(:, i) = g(:, i) + a(i) * nb
      end do
    end if
    g(:, nin + 1) = g(:, nin + 1) + nb
  end subroutine layer_grad

  ! Forward pass of one atom: o(off_k + 1 : off_k + n_k) = layer k output.
  subroutine forward(el, kind, vec, x, o)
    type(element_t), intent(in) :: el
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: vec(*), x(el%nf)
    real(dp), intent(out) :: o(el%nh)
    integer(ik) :: k, w, off, prev
    w = el%woff
    call layer_forward(kind, el%sizes(1), el%sizes(2), vec(w), x, o(1))
    w = w + (el%sizes(1) + 1) * el%sizes(2)
    prev = 1
    off = el%sizes(2) + 1
    do k = 2, el%nl
      call layer_forward(kind, el%sizes(k), el%sizes(k + 1), vec(w), o(prev), o(off))
      w = w + (el%sizes(k) + 1) * el%sizes(k + 1)
      prev = off
      off = off + el%sizes(k + 1)
    end do
  end subroutine forward

  ! u = dE_i/dx (raw features) of one atom with activations o; d is scratch of length nh.
  subroutine input_gradient(el, kind, vec, o, d, u)
    type(element_t), intent(in) :: el
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: vec(*), o(el%nh)
    real(dp), intent(out) :: d(el%nh), u(el%nf)
    integer(ik) :: k, w, off, prev
    off = el%nh - el%sizes(el%nl + 1) + 1
    w = weight_start(el, el%nl)
    d(off:el%nh) = vec(el%islope) * dact(kind, o(off:el%nh))
    do k = el%nl, 2, -1
      prev = off - el%sizes(k)
      call layer_back(el%sizes(k), el%sizes(k + 1), vec(w), d(off), d(prev))
      d(prev:off - 1) = d(prev:off - 1) * dact(kind, o(prev:off - 1))
      off = prev
      w = w - (el%sizes(k - 1) + 1) * el%sizes(k)
    end do
    call layer_back(el%sizes(1), el%sizes(2), vec(w), d(1), u)
    u = u * el%scale
  end subroutine input_gradient

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

  ! Accumulate one centre's nb blocks: acc(:, m - a0 + 1) += d(:, p) u3 with u3 = (u, u, u).
  ! Forces follow as -sum over each third of acc (sum_forces), once per atom instead of per block.
  subroutine scatter_forces(n3, nb, d, neigh, u3, a0, nat, acc)
    integer(ik), intent(in) :: n3, nb, neigh(nb), a0, nat
    real(dp), intent(in) :: d(n3, nb), u3(n3)
    real(dp), intent(inout) :: acc(n3, nat)
    integer(ik) :: p, m
    do p = 1, nb
      m = neigh(p) - a0 + 1
      acc(:, m) = acc(:, m) + d(:, p) * u3
    end do
  end subroutine scatter_forces

  ! Add f(l, k) -= sum_f acc(f, l, k) for the image's nat atoms (one element's centres).
  subroutine sum_forces(nf, nat, acc, f)
    integer(ik), intent(in) :: nf, nat
    real(dp), intent(in) :: acc(nf, 3, nat)
    real(dp), intent(inout) :: f(3, nat)
    integer(ik) :: k, l
    do k = 1, nat
      do l = 1, 3
        f(l, k) = f(l, k) - sum(acc(:, l, k))
      end do
    end do
  end subroutine sum_forces

  ! v = sum over a centre's nb blocks p of d(:, :, p) w(:, m(p)).
  subroutine gather_direction(nf, nb, d, neigh, ntot, w, v)
    integer(ik), intent(in) :: nf, nb, ntot, neigh(nb)
    real(dp), intent(in) :: d(nf, 3, nb), w(3, ntot)
    real(dp), intent(out) :: v(nf)
    integer(ik) :: p, m
    v = 0.0_dp
    do p = 1, nb
      m = neigh(p)
      v = v + d(:, 1, p) * w(1, m) + d(:, 2, p) * w(2, m) + d(:, 3, p) * w(3, m)
    end do
  end subroutine gather_direction

  ! Tangent of the forward pass along the input direction v: t = d net_k, dt = d o_k.
  subroutine tangent(el, kind, vec, o, v, t, dt)
    type(element_t), intent(in) :: el
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: vec(*), o(el%nh), v(el%nf)
    real(dp), intent(out) :: t(el%nh), dt(el%nh)
    integer(ik) :: k, i, w, off, prev, nin, nout
    w = el%woff
    off = 1
    prev = 0
    do k = 1, el%nl
      nin = el%sizes(k)
      nout = el%sizes(k + 1)
      t(off:off + nout - 1) = 0.0_dp
      do i = 1, nin
        if (k == 1) then
          t(off:off + nout - 1) = t(off:off + nout - 1) + v(i) * vec(w + (i - 1) * nout:w + i * nout - 1)
        else
          t(off:off + nout - 1) = t(off:off + nout - 1) + dt(prev + i - 1) * vec(w + (i - 1) * nout:w + i * nout - 1)
        end if
      end do
      dt(off:off + nout - 1) = dact(kind, o(off:off + nout - 1)) * t(off:off + nout - 1)
      w = w + (nin + 1) * nout
      prev = off
      off = off + nout
    end do
  end subroutine tangent

  ! Reverse pass of one atom: adds d(g E_i - v . dE_i/dx')/d params to grad.
  ! Seeds: o_out adjoint slope * g; with the tangent, d o_out adjoint -slope.
  subroutine reverse(el, kind, vec, x, o, v, t, dt, g, with_tangent, ob, db, grad)
    type(element_t), intent(in) :: el
    integer(ik), intent(in) :: kind
    real(dp), intent(in) :: vec(*), x(el%nf), o(el%nh), v(el%nf), t(el%nh), dt(el%nh), g
    logical, intent(in) :: with_tangent
    real(dp), intent(out) :: ob(el%nh), db(el%nh)
    real(dp), intent(inout) :: grad(*)
    integer(ik) :: k, j, w, off, prev, nin, nout
    real(dp) :: s, fp
    s = vec(el%islope)
    off = el%nh - el%sizes(el%nl + 1) + 1
    ob(off:el%nh) = s * g
    db(off:el%nh) = 0.0_dp
    grad(el%iint) = grad(el%iint) + g
    grad(el%islope) = grad(el%islope) + g * o(el%nh)
    if (with_tangent) then
      db(off:el%nh) = -s
      grad(el%islope) = grad(el%islope) - dt(el%nh)
    end if
    do k = el%nl, 1, -1
      nin = el%sizes(k)
      nout = el%sizes(k + 1)
      w = weight_start(el, k)
      ! Turn output adjoints into net adjoints, in place: ob -> d net, db -> d (d net).
      do j = off, off + nout - 1
        fp = dact(kind, o(j))
        if (with_tangent) then
          ob(j) = fp * ob(j) + ddact(kind, o(j)) * t(j) * db(j)
          db(j) = fp * db(j)
        else
          ob(j) = fp * ob(j)
        end if
      end do
      if (k == 1) then
        call layer_grad(nin, nout, x, v, ob(off), db(off), with_tangent, grad(w))
      else
        prev = off - nin
        call layer_grad(nin, nout, o(prev), dt(prev), ob(off), db(off), with_tangent, grad(w))
        call layer_back(nin, nout, vec(w), ob(off), ob(prev))
        if (with_tangent) call layer_back(nin, nout, vec(w), db(off), db(prev))
        off = prev
      end if
    end do
  end subroutine reverse

  ! Build the element views from the C pointers.
  subroutine bind_elements(ne, nimg, maxl, info, sizes, xs_p, scale_p, rows_p, bptr_p, neigh_p, dfp_p, &
                           work_p, sizes_t, els)
    integer(ik), intent(in) :: ne, nimg, maxl, info(NINFO, ne)
    integer(ik), intent(in), target :: sizes(0:maxl, ne)
    type(c_ptr), intent(in) :: xs_p(ne), scale_p(ne), rows_p(ne), bptr_p(ne), neigh_p(ne), dfp_p(ne), work_p(ne)
    integer(ik), intent(in) :: sizes_t
    type(element_t), intent(out) :: els(ne)
    integer(ik) :: e
    do e = 1, ne
      els(e)%n = info(1, e)
      els(e)%nf = info(2, e)
      els(e)%np = info(3, e)
      els(e)%nl = info(4, e)
      els(e)%woff = info(5, e)
      els(e)%islope = info(6, e)
      els(e)%iint = info(7, e)
      els(e)%nh = info(8, e)
      els(e)%sizes(1:maxl + 1) => sizes(:, e)
      call c_f_pointer(xs_p(e), els(e)%xs, [els(e)%nf, els(e)%n])
      call c_f_pointer(scale_p(e), els(e)%scale, [els(e)%nf])
      call c_f_pointer(rows_p(e), els(e)%rows, [nimg + 1])
      call c_f_pointer(work_p(e), els(e)%work, [els(e)%nh, els(e)%n])
      if (sizes_t /= 0) then
        call c_f_pointer(bptr_p(e), els(e)%bptr, [els(e)%n + 1])
        call c_f_pointer(neigh_p(e), els(e)%neigh, [els(e)%np])
        call c_f_pointer(dfp_p(e), els(e)%dfp, [els(e)%nf, 3_ik, els(e)%np])
      end if
    end do
  end subroutine bind_elements

  ! Phase 1 of one image: activations, atomic energies summed into energy, forces into f.
  ! acc and ub are scratch of 3 mf nat; f(3, nat) receives the image's forces when with_forces.
  ! The network work of all the image's centres comes first, then one uninterrupted stream
  ! over their derivative blocks (long streams keep the memory prefetchers busy).
  subroutine image_forward(els, ne, img, kind, with_forces, vec, a0, mf, nat, d, ub, energy, acc, f)
    integer(ik), intent(in) :: ne, img, kind, a0, mf, nat
    type(element_t), intent(inout) :: els(ne)
    logical, intent(in) :: with_forces
    real(dp), intent(in) :: vec(*)
    real(dp), intent(inout) :: d(*), ub(3 * mf, nat), acc(3 * mf * nat), f(3, nat)
    real(dp), intent(out) :: energy
    integer(ik) :: e, r, k, b0, b1, n3, nf
    energy = 0.0_dp
    if (with_forces) f = 0.0_dp
    do e = 1, ne
      associate (el => els(e))
        nf = el%nf
        n3 = 3 * nf
        do r = el%rows(img), el%rows(img + 1) - 1
          k = r - el%rows(img) + 1
          call forward(el, kind, vec, el%xs(:, r), el%work(:, r))
          energy = energy + vec(el%islope) * el%work(el%nh, r) + vec(el%iint)
          if (with_forces) then
            call input_gradient(el, kind, vec, el%work(:, r), d, ub(:, k))
            ub(nf + 1:2 * nf, k) = ub(1:nf, k)
            ub(2 * nf + 1:n3, k) = ub(1:nf, k)
          end if
        end do
        if (.not. with_forces) cycle
        acc(1:n3 * nat) = 0.0_dp
        do r = el%rows(img), el%rows(img + 1) - 1
          b0 = el%bptr(r)
          b1 = el%bptr(r + 1) - 1
          call scatter_forces(n3, b1 - b0 + 1, el%dfp(:, :, b0:b1), el%neigh(b0:b1), &
                              ub(:, r - el%rows(img) + 1), a0, nat, acc)
        end do
        call sum_forces(nf, nat, acc, f)
      end associate
    end do
  end subroutine image_forward

  ! Phase 2 of one image: the parameter gradient of its energy and force terms (vb: scratch mf nat).
  subroutine image_reverse(els, ne, img, kind, with_forces, vec, ntot, w, g, maxh, maxf, nat, vb, t, dt, ob, db, &
                           grad)
    integer(ik), intent(in) :: ne, img, kind, ntot, maxh, maxf, nat
    type(element_t), intent(in) :: els(ne)
    logical, intent(in) :: with_forces
    real(dp), intent(in) :: vec(*), w(3, ntot), g
    real(dp), intent(out) :: vb(maxf, nat), t(maxh), dt(maxh), ob(maxh), db(maxh)
    real(dp), intent(inout) :: grad(*)
    integer(ik) :: e, r, k, b0, b1
    vb = 0.0_dp
    t = 0.0_dp
    dt = 0.0_dp
    ! Backwards: the blocks phase 1 read last are the ones most likely still in cache.
    do e = ne, 1, -1
      associate (el => els(e))
        if (with_forces) then
          do r = el%rows(img + 1) - 1, el%rows(img), -1
            k = r - el%rows(img) + 1
            b0 = el%bptr(r)
            b1 = el%bptr(r + 1) - 1
            call gather_direction(el%nf, b1 - b0 + 1, el%dfp(:, :, b0:b1), el%neigh(b0:b1), ntot, w, vb(:, k))
            vb(1:el%nf, k) = vb(1:el%nf, k) * el%scale
          end do
        end if
        do r = el%rows(img), el%rows(img + 1) - 1
          k = r - el%rows(img) + 1
          if (with_forces) call tangent(el, kind, vec, el%work(:, r), vb(:, k), t, dt)
          call reverse(el, kind, vec, el%xs(:, r), el%work(:, r), vb(:, k), t, dt, g, with_forces, ob, db, grad)
        end do
      end associate
    end do
  end subroutine image_reverse

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

  ! Loss parts and gradient of one shard; see the module header for the arrays.
  ! coef = (c_E, c_F); out = (energy_loss, force_loss, energy_maxresid, force_maxresid).
  subroutine amp_nn_loss(ne, nimg, ntot, nparam, maxl, info, sizes, kind, with_forces, coef, natoms, &
                         atomstart, eref, fref, xs_p, scale_p, rows_p, bptr_p, neigh_p, dfp_p, work_p, &
                         vec, f, scratch, out, grad) bind(C, name="amp_nn_loss")
    integer(ik), value, intent(in) :: ne, nimg, ntot, nparam, maxl, kind, with_forces
    integer(ik), intent(in) :: info(NINFO, ne), natoms(nimg), atomstart(nimg + 1)
    integer(ik), intent(in), target :: sizes(0:maxl, ne)
    real(dp), intent(in) :: coef(2), eref(nimg), fref(3, ntot), vec(nparam)
    type(c_ptr), intent(in) :: xs_p(ne), scale_p(ne), rows_p(ne), bptr_p(ne), neigh_p(ne), dfp_p(ne), work_p(ne)
    real(dp), intent(inout) :: f(3, ntot)
    real(dp), intent(out) :: scratch(5 * maxval(info(8, :)) + 6 * maxval(info(2, :)) * maxval(natoms)), &
                             out(4), grad(nparam)
    type(element_t) :: els(ne)
    real(dp) :: energy, res, g
    integer(ik) :: img, mf, mh, a0, nat, s0, s1
    logical :: forces
    forces = with_forces /= 0
    mf = maxval(info(2, :))
    mh = maxval(info(8, :))
    s0 = 5 * mh + 1  ! then acc (3 mf nat), then ub / vb (3 mf nat)
    s1 = s0 + 3 * mf * maxval(natoms)
    call bind_elements(ne, nimg, maxl, info, sizes, xs_p, scale_p, rows_p, bptr_p, neigh_p, dfp_p, work_p, &
                       with_forces, els)
    out = 0.0_dp
    grad = 0.0_dp
    do img = 1, nimg
      a0 = atomstart(img)
      nat = natoms(img)
      call image_forward(els, ne, img, kind, forces, vec, a0, mf, nat, scratch(1), scratch(s1), energy, &
                         scratch(s0), f(1, a0))
      res = (energy - eref(img)) / real(natoms(img), dp)
      out(1) = out(1) + res * res
      out(3) = max(out(3), abs(res))
      g = coef(1) * 2.0_dp * res / real(natoms(img), dp)
      if (forces) then
        call force_residuals(atomstart(img), atomstart(img + 1) - 1, natoms(img), coef(2), fref, f, out(2), out(4))
      end if
      call image_reverse(els, ne, img, kind, forces, vec, ntot, f, g, mh, mf, nat, scratch(s1), &
                         scratch(mh + 1), scratch(2 * mh + 1), scratch(3 * mh + 1), scratch(4 * mh + 1), grad)
    end do
  end subroutine amp_nn_loss

end module amp_nn_kernels
