//! The MNIST files shipped in `data/mnist/`: real headers, the well-known first labels, and the
//! burn Dataset/Batcher over them.

use burn::backend::NdArray;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use score_data::mnist::{Mnist, MnistBatcher, MnistItem, Scaling, Split, default_dir};

type B = NdArray<f32>;

#[test]
fn shipped_splits_have_the_real_headers_and_labels() {
    let dir = default_dir();
    let train = Mnist::load(&dir, Split::Train).unwrap();
    assert_eq!((train.len(), train.rows, train.cols), (60_000, 28, 28));
    assert_eq!(train.images.len(), 60_000 * 784);
    assert_eq!(&train.labels[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    let test = Mnist::load(&dir, Split::Test).unwrap();
    assert_eq!((test.len(), test.rows, test.cols), (10_000, 28, 28));
    assert_eq!(&test.labels[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    // Every class present in roughly its known share (each digit is 9–11% of the test set).
    let mut counts = [0usize; 10];
    for &l in &test.labels {
        counts[l as usize] += 1;
    }
    assert!(
        counts.iter().all(|&c| (850..1150).contains(&c)),
        "{counts:?}"
    );
    // Images are not blank: the first test image (a 7) has ink in its centre rows.
    assert!(test.image(0)[14 * 28..15 * 28].iter().any(|&p| p > 128));
}

#[test]
fn dataset_batcher_and_batch_tensor_agree() {
    let test = Mnist::load(&default_dir(), Split::Test).unwrap();
    let dev = Default::default();
    assert_eq!(Dataset::<MnistItem>::len(&test), 10_000);
    let items: Vec<MnistItem> = [3, 0, 9999].iter().map(|&i| test.get(i).unwrap()).collect();
    assert_eq!(items[1].label, 7);
    let batch = MnistBatcher::new(Scaling::MinusOneOne).batch(items, &dev);
    let batch: score_data::MnistBatch<B> = batch;
    assert_eq!(batch.images.dims(), [3, 1, 28, 28]);
    assert_eq!(
        batch.labels.to_data().to_vec::<i64>().unwrap(),
        vec![test.labels[3] as i64, 7, test.labels[9999] as i64]
    );
    let direct = test.batch_tensor::<B>(&[3, 0, 9999], Scaling::MinusOneOne, &dev);
    let (a, b) = (
        batch.images.to_data().to_vec::<f32>().unwrap(),
        direct.to_data().to_vec::<f32>().unwrap(),
    );
    assert_eq!(a, b);
    assert!(a.iter().all(|x| (-1.0..=1.0).contains(x)));
    assert_eq!(a[784], Scaling::MinusOneOne.apply(test.image(0)[0]));
    let f = test.to_f32(Scaling::ZeroOne);
    assert_eq!(f.len(), 10_000 * 784);
    assert!(f.iter().all(|x| (0.0..=1.0).contains(x)));
    assert!(
        test.try_batch_tensor::<B>(&[10_000], Scaling::ZeroOne, &dev)
            .is_err()
    );
    assert!(test.get(10_000).is_none());
}
