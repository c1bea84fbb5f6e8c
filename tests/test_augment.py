import pytest
import torch
import torch.nn.functional as F

from sparta.augment import Augmenter, box_smooth, periodic_shift, random_crop, random_keep_mask
from sparta.config import AugmentConfig
from sparta.data.store import DataError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def field(b: int = 4, c: int = 3, n_lat: int = 8, n_lon: int = 16, seed: int = 1) -> torch.Tensor:
    # Continuous random values: none is exactly 0, so zeros in an output mean "masked".
    return torch.randn(b, c, n_lat, n_lon, generator=gen(seed)) + 10.0


def hidden_ratio(x: torch.Tensor) -> torch.Tensor:
    return (x == 0).float().mean(dim=(-2, -1))  # (B, C)


# --- box_smooth -----------------------------------------------------------------------------------

def test_box_smooth_kernel_one_is_identity_and_constant_stays_constant():
    x = field()
    assert box_smooth(x, 1) is x
    const = torch.full((2, 3, 8, 16), 2.5)
    for k in (2, 3, 5):
        torch.testing.assert_close(box_smooth(const, k), const)


def test_box_smooth_spreads_delta_with_longitude_wrap():
    x = torch.zeros(1, 1, 8, 16)
    x[0, 0, 4, 0] = 1.0
    out = box_smooth(x, 3)[0, 0]
    expected = torch.zeros(8, 16)
    expected[3:6][:, [15, 0, 1]] = 1 / 9
    torch.testing.assert_close(out, expected)
    assert out.sum().item() == pytest.approx(1.0)


def test_box_smooth_replicates_latitude_edges():
    x = torch.zeros(1, 1, 8, 16)
    x[0, 0, 0, 5] = 9.0  # edge row is replicated into the padding: counted twice at row 0
    out = box_smooth(x, 3)[0, 0]
    assert out[0, 5].item() == pytest.approx(2.0)
    assert out[1, 5].item() == pytest.approx(1.0)


# --- masks ----------------------------------------------------------------------------------------

def test_random_keep_mask_realised_ratio_in_range_and_shared():
    n = 8 * 16
    keep = random_keep_mask(64, 8, 16, 0.5, 0.9, gen())
    assert keep.shape == (64, 1, 8, 16) and keep.dtype == torch.bool
    ratio = 1 - keep.float().mean(dim=(1, 2, 3))
    assert ratio.min() >= 0.5 - 0.5 / n and ratio.max() < 0.9 + 0.5 / n
    assert ratio.std() > 0.05  # one ratio per sample, not one per batch
    torch.testing.assert_close(ratio, ratio.mul(n).round().div(n))  # exact counts


def test_random_keep_mask_per_channel_same_ratio_other_pattern():
    keep = random_keep_mask(8, 8, 16, 0.3, 0.7, gen(), channels=3)
    counts = keep.sum(dim=(-2, -1))
    assert (counts == counts[:, :1]).all()
    assert not (keep[:, 0] == keep[:, 1]).all()


def test_random_keep_mask_deterministic_under_seed():
    a = random_keep_mask(4, 8, 16, 0.5, 0.9, gen(3), channels=2)
    b = random_keep_mask(4, 8, 16, 0.5, 0.9, gen(3), channels=2)
    c = random_keep_mask(4, 8, 16, 0.5, 0.9, gen(4), channels=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_native_mode_mask_hides_exactly_the_native_points_shared_by_channels():
    aug = Augmenter(AugmentConfig(mode="native"), 8, 16)
    x = field()
    out = aug.mask(x, gen(5), 0.5, 0.9)[0]
    keep = random_keep_mask(4, 8, 16, 0.5, 0.9, gen(5), device=x.device)
    torch.testing.assert_close(out, x * keep, rtol=0, atol=0)
    ratio = hidden_ratio(out)
    assert (ratio == ratio[:, :1]).all() and ratio.min() >= 0.5 - 1 / 256 and ratio.max() < 0.9 + 1 / 256


def test_mask_per_channel_is_independent():
    aug = Augmenter(AugmentConfig(mode="native", mask_per_channel=True), 8, 16)
    out = aug.mask(field(), gen(), 0.5, 0.9)[0]
    assert not ((out[:, 0] == 0) == (out[:, 1] == 0)).all()


def test_paper_mode_native_mask_is_applied_before_resize():
    aug = Augmenter(AugmentConfig(mode="paper"), 32, 64)
    x = field(2, 5, 32, 64)
    out = aug.mask(x, gen(7), 0.5, 0.9)[0]
    keep = random_keep_mask(2, 32, 64, 0.5, 0.9, gen(7))
    assert out.shape == (2, 5, 72, 144)
    torch.testing.assert_close(out, aug.encoder_input(x * keep))


def test_upsampled_mask_is_at_input_resolution():
    aug = Augmenter(AugmentConfig(mode="paper", mask_on="upsampled", mask_per_channel=True), 32, 64)
    out = aug.mask(field(3, 5, 32, 64), gen(), 0.5, 0.9)[0]
    ratio = hidden_ratio(out)
    n = 72 * 144
    assert out.shape == (3, 5, 72, 144)
    assert ratio.min() >= 0.5 - 0.5 / n and ratio.max() < 0.9 + 0.5 / n
    assert not ((out[:, 0] == 0) == (out[:, 1] == 0)).all()


@pytest.mark.parametrize("mode,mask_on", [("native", "native"), ("paper", "native"), ("paper", "upsampled")])
def test_fixed_keep_mask_is_honoured_exactly(mode, mask_on):
    aug = Augmenter(AugmentConfig(mode=mode, mask_on=mask_on), 8, 16)
    x = field()
    keep = torch.rand(8, 16, generator=gen(9)) > 0.7
    torch.testing.assert_close(aug.mask(x, gen(), 0.5, 0.9, keep=keep)[0], aug.encoder_input(x * keep))
    per_sample = torch.rand(4, 8, 16, generator=gen(10)) > 0.5
    out = aug.mask(x, gen(), 0.5, 0.9, keep=per_sample)[0]
    torch.testing.assert_close(out, aug.encoder_input(x * per_sample[:, None]))
    with pytest.raises(DataError, match="observation mask"):
        aug.mask(x, gen(), 0.5, 0.9, keep=torch.ones(8, 15, dtype=torch.bool))


# --- crop and shift -------------------------------------------------------------------------------

def test_random_crop_matches_reference_slices():
    x = field(8, 2, 20, 30)
    out = random_crop(x, (12, 17), gen(11))
    ref = gen(11)
    top = torch.randint(0, 9, (8,), generator=ref)
    left = torch.randint(0, 14, (8,), generator=ref)
    assert len(set(zip(top.tolist(), left.tolist()))) > 1
    for b in range(8):
        assert torch.equal(out[b], x[b, :, top[b]:top[b] + 12, left[b]:left[b] + 17])


def test_periodic_shift_is_a_per_sample_roll():
    x = field(8, 2, 4, 16)
    out = periodic_shift(x, 6, gen(12))
    shift = torch.randint(0, 7, (8,), generator=gen(12))
    assert len(set(shift.tolist())) > 1
    for b in range(8):
        assert torch.equal(out[b], torch.roll(x[b], int(shift[b]), dims=-1))


# --- Augmenter ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_lat,n_lon,input_hw,resize_hw", [(32, 64, (72, 144), (80, 160)),
                                                            (64, 128, (144, 288), (160, 320))])
def test_paper_mode_shapes(n_lat, n_lon, input_hw, resize_hw):
    aug = Augmenter(AugmentConfig(), n_lat, n_lon)
    assert aug.input_hw == input_hw and aug.resize_hw == resize_hw and aug.kernel == 5
    x = field(2, 5, n_lat, n_lon)
    assert aug.encoder_input(x).shape == (2, 5, *input_hw)
    view, _, target = aug.view(x, gen(), masked=True, with_target=True)
    assert view.shape == (2, 5, *input_hw) and target.shape == x.shape


def test_native_mode_settings_and_identity_encoder_input():
    aug = Augmenter(AugmentConfig(mode="native"), 32, 64)
    assert aug.input_hw == (32, 64) and aug.kernel == 3 and aug.max_shift == 6
    assert Augmenter(AugmentConfig(mode="native", smooth_kernel=1), 32, 64).kernel == 1
    x = field(2, 5, 32, 64)
    assert aug.encoder_input(x) is x


def test_paper_target_is_the_clean_crop_resized_to_native():
    aug = Augmenter(AugmentConfig(smooth_kernel=1), 32, 64)
    x = field(4, 2, 32, 64)
    view, _, target = aug.view(x, gen(13), masked=False, with_target=True)
    torch.testing.assert_close(target, F.interpolate(view, size=(32, 64), mode="bicubic", align_corners=False))
    crop = random_crop(F.interpolate(x, size=(80, 160), mode="bicubic", align_corners=False), (72, 144), gen(13))
    torch.testing.assert_close(view, crop)


def test_native_target_is_the_exact_roll_of_the_clean_field():
    aug = Augmenter(AugmentConfig(mode="native"), 8, 16)
    x = field()
    g = gen(14)
    view, _, target = aug.view(x, g, masked=True, with_target=True)
    ref = gen(14)
    random_keep_mask(4, 8, 16, 0.5, 0.9, ref)  # the view's mask is drawn first
    shift = torch.randint(0, aug.max_shift + 1, (4,), generator=ref)
    for b in range(4):
        assert torch.equal(target[b], torch.roll(x[b], int(shift[b]), dims=-1))
    assert view.shape == x.shape and not torch.equal(view, target)


@pytest.mark.parametrize("mode,mask_on", [("native", "native"), ("paper", "native"), ("paper", "upsampled")])
def test_views_deterministic_and_independent_of_with_target(mode, mask_on):
    aug = Augmenter(AugmentConfig(mode=mode, mask_on=mask_on), 8, 16)
    x = field()
    a = aug.view(x, gen(15), masked=True)[0]
    b, _, _ = aug.view(x, gen(15), masked=True, with_target=True)
    c = aug.view(x, gen(16), masked=True)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_masked_view_hides_the_sampled_fraction():
    aug = Augmenter(AugmentConfig(mode="native", mask_on="upsampled"), 32, 64)
    view = aug.view(field(16, 2, 32, 64), gen(), masked=True)[0]
    ratio = hidden_ratio(view)
    assert ratio.min() >= 0.5 - 1 / 4096 and ratio.max() < 0.9 + 1 / 4096


# --- fused (matrix) paths equal the step-by-step composition --------------------------------------

def _box_smooth_2d(x: torch.Tensor, k: int) -> torch.Tensor:
    # The original one-pass formulation: circular/replicate padding, then k x k average pooling.
    lo, hi = (k - 1) // 2, k // 2
    padded = F.pad(F.pad(x, (lo, hi, 0, 0), mode="circular"), (0, 0, lo, hi), mode="replicate")
    return F.avg_pool2d(padded, k, stride=1)


def _bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


def _argsort_keep_mask(batch, n_lat, n_lon, low, high, g, channels=1):
    # The original exact-count mask: rank all draws by a full sort, hide the first `hidden` ranks.
    n = n_lat * n_lon
    ratio = low + (high - low) * torch.rand(batch, generator=g)
    hidden = torch.round(ratio * n).long()
    order = torch.rand(batch, channels, n, generator=g).argsort(dim=-1)
    keep = torch.empty(batch, channels, n, dtype=torch.bool)
    keep.scatter_(-1, order, (torch.arange(n) >= hidden[:, None, None]).expand(batch, channels, n))
    return keep.view(batch, channels, n_lat, n_lon)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_separable_box_smooth_equals_2d_pooling(k):
    x = torch.randn(3, 2, 9, 16, generator=gen(20))
    torch.testing.assert_close(box_smooth(x, k), _box_smooth_2d(x, k), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_lat,n_lon", [(32, 64), (64, 128)])
@pytest.mark.parametrize("kernel", [1, 5])
def test_paper_fused_view_and_target_equal_reference_composition(n_lat, n_lon, kernel):
    aug = Augmenter(AugmentConfig(smooth_kernel=kernel), n_lat, n_lon)
    x = torch.randn(6, 3, n_lat, n_lon, generator=gen(21))
    view, _, target = aug.view(x, gen(22), masked=False, with_target=True)
    # Reference in float64: float32 F.interpolate itself is off by up to ~3e-5 at 128x64.
    crop = random_crop(_bicubic(x.double(), aug.resize_hw), aug.input_hw, gen(22))  # same offsets, same draws
    ref_view = _box_smooth_2d(crop, kernel) if kernel > 1 else crop
    torch.testing.assert_close(view.double(), ref_view, rtol=0, atol=1e-5)
    torch.testing.assert_close(target.double(), _bicubic(crop, (n_lat, n_lon)), rtol=0, atol=1e-5)
    crop32 = random_crop(_bicubic(x, aug.resize_hw), aug.input_hw, gen(22))  # the float32 composition
    torch.testing.assert_close(view, _box_smooth_2d(crop32, kernel) if kernel > 1 else crop32, rtol=0, atol=1e-4)
    assert torch.equal(view, aug.view(x, gen(22), masked=False)[0])  # with_target does not change the view


@pytest.mark.parametrize("n_lat,n_lon", [(32, 64), (64, 128)])
def test_paper_fused_masked_view_equals_reference_composition(n_lat, n_lon):
    aug = Augmenter(AugmentConfig(), n_lat, n_lon)
    x = field(4, 2, n_lat, n_lon)
    view = aug.view(x, gen(23), masked=True)[0]
    ref = gen(23)
    keep = random_keep_mask(4, n_lat, n_lon, 0.5, 0.9, ref)  # the native mask is drawn first
    crop = random_crop(_bicubic((x * keep).double(), aug.resize_hw), aug.input_hw, ref)
    torch.testing.assert_close(view.double(), _box_smooth_2d(crop, 5), rtol=1e-6, atol=1e-5)


def test_paper_encoder_input_is_bicubic_resize():
    aug = Augmenter(AugmentConfig(), 32, 64)
    x = torch.randn(3, 2, 32, 64, generator=gen(24))
    torch.testing.assert_close(aug.encoder_input(x), _bicubic(x, (72, 144)), rtol=1e-5, atol=1e-5)


def test_paper_view_of_another_grid_falls_back_to_the_composition():
    aug = Augmenter(AugmentConfig(), 32, 64)
    x = torch.randn(2, 2, 16, 32, generator=gen(25))
    view = aug.view(x, gen(26), masked=False)[0]
    crop = random_crop(_bicubic(x, aug.resize_hw), aug.input_hw, gen(26))
    torch.testing.assert_close(view, _box_smooth_2d(crop, 5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_lat,n_lon", [(8, 16), (32, 64), (64, 128)])
def test_native_fused_view_equals_shift_then_smooth(n_lat, n_lon):
    aug = Augmenter(AugmentConfig(mode="native"), n_lat, n_lon)
    x = torch.randn(6, 3, n_lat, n_lon, generator=gen(27))
    view, _, target = aug.view(x, gen(28), masked=False, with_target=True)
    rolled = periodic_shift(x, aug.max_shift, gen(28))
    torch.testing.assert_close(view, _box_smooth_2d(rolled, aug.kernel), rtol=1e-5, atol=1e-5)
    assert torch.equal(target, rolled)


@pytest.mark.parametrize("channels", [1, 3])
def test_random_keep_mask_selects_the_same_points_as_a_full_sort(channels):
    for seed in range(5):
        keep = random_keep_mask(32, 32, 64, 0.5, 0.9, gen(seed), channels=channels)
        assert torch.equal(keep, _argsort_keep_mask(32, 32, 64, 0.5, 0.9, gen(seed), channels))


@pytest.mark.parametrize("mode,mask_on,per_channel", [("native", "native", False), ("paper", "native", True),
                                                      ("paper", "upsampled", False)])
def test_observation_mask_follows_the_view_geometry(mode, mask_on, per_channel):
    # A positive field has no zero of its own: a view value is 0 exactly where no observed value enters it,
    # which is where the mask the augmenter returns with the view is False.
    aug = Augmenter(AugmentConfig(mode=mode, mask_on=mask_on, mask_per_channel=per_channel), 32, 64)
    x = field(4, 2, 32, 64).abs() + 1.0
    for sparse, keep in (aug.view(x, gen(30), masked=True), aug.mask(x, gen(31), 0.5, 0.9)):
        assert keep.shape == (4, 2 if per_channel else 1, *aug.input_hw)
        assert torch.equal(keep.expand(sparse.shape), sparse != 0)
    assert aug.view(x, gen(32), masked=False)[1] is None
