"The pinned stack works together: torch and torchvision load each other's ops, fastai imports, resnet18 runs."
import pytest, torch, torchvision

def test_torchvision_ops_and_resnet18():
    from torchvision.models import resnet18
    from torchvision.ops import nms
    m = resnet18(num_classes=10).eval()
    with torch.no_grad(): out = m(torch.randn(2, 3, 28, 28))
    assert out.shape == (2, 10)
    keep = nms(torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10]]), torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0]

@pytest.mark.dev
def test_nbdev_stack_versions():
    import fastai, fastcore, nbdev
    from execnb.nbio import read_nb    # nbdev 2 needs execnb.nbio (gone in execnb 0.2+)
    assert fastai.__version__.startswith('2.8.')
    assert nbdev.__version__.startswith('2.')
    assert tuple(int(o) for o in fastcore.__version__.split('.')[:2]) < (1, 14)
