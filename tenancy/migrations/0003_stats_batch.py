from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tenancy', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='TenantStatsBatch',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('epoch', models.CharField(max_length=32, verbose_name='epoch')),
                ('seq', models.PositiveBigIntegerField(verbose_name='sequence number')),
                ('applied_at', models.DateTimeField(db_index=True, verbose_name='applied at')),
            ],
            options={
                'verbose_name': 'tenant statistics batch',
                'verbose_name_plural': 'tenant statistics batches',
                'constraints': [models.UniqueConstraint(fields=('epoch', 'seq'), name='tenancy_stats_batch_unique')],
            },
        ),
    ]
