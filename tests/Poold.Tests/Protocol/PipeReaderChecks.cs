using System.Buffers;
using System.IO.Pipelines;

namespace Poold.Tests.Protocol;

/// <summary>Checks shared by the tests of the relay's reader over a plain and over a TLS stream.</summary>
internal static class PipeReaderChecks
{
    /// <summary>Reads until <paramref name="count"/> bytes are there and consumes exactly those.</summary>
    public static async Task<byte[]> ReadExactlyAsync(PipeReader reader, int count)
    {
        while (true)
        {
            var result = await reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            if (result.Buffer.Length >= count)
            {
                var bytes = result.Buffer.Slice(0, count).ToArray();
                reader.AdvanceTo(result.Buffer.GetPosition(count));
                return bytes;
            }

            Assert.That(result.IsCompleted, Is.False, "the stream ended early");
            reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    /// <summary>
    /// Rounds of a cancel racing the peer's byte (<paramref name="send"/>): each round's read ends, canceled or with
    /// the byte, and the byte is never lost; a cancel left over from a round only cancels a read.
    /// </summary>
    public static async Task CancelRacingDataAsync(PipeReader reader, Func<byte, Task> send, int rounds)
    {
        for (var i = 0; i < rounds; i++)
        {
            var waiting = reader.ReadAsync().AsTask();
            var cancel = Task.Run(reader.CancelPendingRead);
            await send((byte)i);
            await cancel;
            var result = await waiting.WaitAsync(TimeSpan.FromSeconds(10));
            while (result.Buffer.IsEmpty)
            {
                Assert.That(result.IsCanceled, Is.True, $"round {i}: an empty result is a canceled one");
                reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                result = await reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            }

            Assert.That(result.Buffer.ToArray(), Is.EqualTo(new[] { (byte)i }), $"round {i}");
            reader.AdvanceTo(result.Buffer.End);
        }
    }
}
